"""wav2vec 2.0: masking, conv lengths, quantizer, pretraining loss, padding invariance, export."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from speechssl.nn import ConvFeatureEncoder, GumbelVectorQuantizer, conv_output_lengths
from speechssl.nn.conv_encoder import WAV2VEC2_CONV_LAYERS, MaskedGroupNorm
from speechssl.ssl import build_model, get_method
from speechssl.ssl.convert import to_fairseq_config
from speechssl.ssl.masking import compute_mask_indices, masked_frame_index
from speechssl.ssl.wav2vec2 import (
    Wav2Vec2Config,
    Wav2Vec2Model,
    Wav2Vec2Pretraining,
    config_from_dict,
    wav2vec2_config,
)
from speechssl.upstream import load_upstream, save_upstream

SMALL = dict(
    conv_layers=[(32, 10, 5), (32, 3, 2), (32, 3, 2), (32, 2, 2)],
    hidden_size=48,
    num_layers=2,
    num_heads=4,
    ffn_dim=96,
    pos_conv_kernel=16,
    pos_conv_groups=4,
    codebook_entries=16,
    final_dim=32,
    num_negatives=10,
    mask_prob=0.5,
    mask_length=4,
    layerdrop=0.0,
)


def speechlike(seconds: float, seed: int, sample_rate: int = 16000) -> torch.Tensor:
    """Voiced 'syllables' (harmonics of a gliding f0 under a syllable envelope) alternating with
    noise bursts: structured enough that masked frames are predictable from context."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = 110 + 60 * rng.random() + 30 * np.sin(2 * np.pi * (0.5 + rng.random()) * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(h * phase) / h for h in range(1, 8))
    syllable = np.clip(np.sin(2 * np.pi * (3 + rng.random()) * t), 0, None)
    noise = rng.standard_normal(n) * (np.sin(2 * np.pi * 2.3 * t + rng.random()) > 0.6)
    wav = 0.2 * voiced * syllable + 0.05 * noise
    return torch.tensor(wav, dtype=torch.float32)


def batch_of(wavs: list[torch.Tensor]) -> SimpleNamespace:
    lengths = torch.tensor([len(w) for w in wavs])
    padded = torch.zeros(len(wavs), int(lengths.max()))
    for i, w in enumerate(wavs):
        padded[i, : len(w)] = w
    return SimpleNamespace(
        wavs=padded, lengths=lengths, utt_ids=[f"u{i}" for i in range(len(wavs))]
    )


# -- masking ------------------------------------------------------------------------------------


def test_mask_coverage_matches_wav2vec2_statistics():
    """p = 0.65, M = 10 masks about 49% of the frames (paper App. A; overlapping spans)."""
    lengths = torch.full((64,), 781)
    mask = compute_mask_indices(lengths, 781, 0.65, 10, np.random.default_rng(0))
    fraction = mask.float().mean().item()
    assert 0.44 < fraction < 0.54
    counts = mask.sum(1)
    assert (counts == counts[0]).all()  # require_same_masks
    # without equalising, masked runs are whole (possibly overlapping) spans: >= mask_length,
    # mean about 14.7 frames (paper App. A)
    free = compute_mask_indices(
        lengths, 781, 0.65, 10, np.random.default_rng(0), require_same_masks=False
    )
    runs = np.concatenate(
        [
            np.diff(np.flatnonzero(np.diff(np.r_[0, row.astype(int), 0])))[::2]
            for row in free.numpy()
        ]
    )
    assert runs.min() >= 10 and 13 < runs.mean() < 16.5
    assert free.float().mean().item() > fraction


def test_mask_respects_padding_min_masks_and_is_deterministic():
    lengths = torch.tensor([300, 120, 35, 0])
    kw = dict(mask_prob=0.01, mask_length=10, min_masks=2, require_same_masks=False)
    mask = compute_mask_indices(lengths, 300, rng=np.random.default_rng(1), **kw)
    valid = torch.arange(300)[None, :] < lengths[:, None]
    assert not (mask & ~valid).any()  # padding never masked
    assert (mask.sum(1)[:3] >= 10).all()  # min_masks spans of 10 even at tiny mask_prob
    assert mask[3].sum() == 0
    # deterministic given the generator, numpy or torch; no global RNG involved
    a = compute_mask_indices(lengths, 300, 0.65, 10, torch.Generator().manual_seed(5))
    np.random.seed(123)
    torch.manual_seed(123)
    b = compute_mask_indices(lengths, 300, 0.65, 10, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert (a.sum(1)[:3] == a.sum(1)[0]).all() and a.sum(1)[0] > 0  # over non-empty rows
    assert a[3].sum() == 0
    with pytest.raises(TypeError, match="explicit generator"):
        compute_mask_indices(lengths, 300, 0.65, 10, None)


def test_masked_frame_index_is_left_aligned_in_order():
    mask = torch.tensor([[0, 1, 0, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    index, valid = masked_frame_index(mask)
    assert index.tolist() == [[1, 3, 4], [0, 0, 0]]
    assert valid.tolist() == [[True, True, True], [True, False, False]]


# -- feature encoder ----------------------------------------------------------------------------


def test_conv_output_lengths_formula_and_module():
    for samples, frames in [(250000, 781), (320000, 999), (32000, 99), (400, 1), (399, 0)]:
        got = conv_output_lengths(torch.tensor([samples]), WAV2VEC2_CONV_LAYERS)
        assert int(got) == frames
    enc = ConvFeatureEncoder([(8, 10, 5), (8, 3, 2), (8, 2, 2)], mode="layer")
    lengths = torch.tensor([1000, 777, 40])
    y, out_lengths = enc(torch.randn(3, 1000), lengths)
    assert y.shape[1] == int(enc.output_lengths(torch.tensor([1000])))
    assert out_lengths.tolist() == enc.output_lengths(lengths).tolist() == [49, 38, 1]
    assert enc.stride == 20
    assert (y[1, 38:] == 0).all()  # padded frames zeroed


# -- quantizer ----------------------------------------------------------------------------------


def _quantizer_choosing(codes: torch.Tensor, groups=2, entries=4) -> tuple:
    """A quantizer whose logits pick ``codes`` (N, G) exactly, and inputs that do so."""
    q = GumbelVectorQuantizer(groups * entries, groups, entries, codevector_dim=2 * groups)
    with torch.no_grad():
        q.weight_proj.weight.copy_(torch.eye(groups * entries) * 50)
        q.weight_proj.bias.zero_()
    x = F.one_hot(codes, entries).float().reshape(len(codes), -1)
    return q, x


def test_quantizer_perplexities():
    n = 64
    q, x = _quantizer_choosing(torch.zeros(n, 2, dtype=torch.long))
    out = q.eval()(x)
    assert out.code_perplexity.item() == pytest.approx(2.0, abs=1e-4)  # one entry per group
    assert out.prob_perplexity.item() == pytest.approx(2.0, abs=1e-3)
    assert int(out.entries_used) == 2
    uniform = torch.stack([torch.arange(n) % 4, (torch.arange(n) // 4) % 4], 1)
    q, x = _quantizer_choosing(uniform)
    out = q.eval()(x)
    assert out.code_perplexity.item() == pytest.approx(8.0, abs=1e-3)  # all G * V entries
    assert int(out.entries_used) == 8
    assert torch.equal(out.codes, uniform)
    expected = torch.cat([q.codevectors[0, uniform[:, 0]], q.codevectors[1, uniform[:, 1]]], 1)
    assert torch.equal(out.quantized, expected)


def test_quantizer_straight_through_gradients_and_schedule():
    torch.manual_seed(0)
    q = GumbelVectorQuantizer(16, num_groups=2, num_entries=8, codevector_dim=6).train()
    x = torch.randn(32, 16, requires_grad=True)
    probe = torch.randn(32, 6)
    torch.manual_seed(1)
    out = q(x)
    # forward: hard one-hot picks, i.e. rows are exact concatenations of codebook entries
    picked = torch.cat([q.codevectors[0, out.codes[:, 0]], q.codevectors[1, out.codes[:, 1]]], 1)
    assert torch.equal(out.quantized, picked)
    (gx,) = torch.autograd.grad((out.quantized * probe).sum(), x, retain_graph=True)
    # backward: the soft Gumbel sample's gradient (same noise: same seed)
    torch.manual_seed(1)
    logits = q.weight_proj(x).view(32, 2, 8)
    soft = F.gumbel_softmax(logits, tau=q.temperature, hard=False)
    soft_out = torch.einsum("ngv,gvd->ngd", soft, q.codevectors).reshape(32, -1)
    (gs,) = torch.autograd.grad((soft_out * probe).sum(), x)
    assert torch.isfinite(gx).all() and gx.abs().sum() > 0
    assert torch.allclose(gx, gs, atol=1e-6)
    # the diversity term is differentiable
    (gp,) = torch.autograd.grad(out.prob_perplexity, x)
    assert gp.abs().sum() > 0
    q.set_num_updates(0)
    assert q.temperature == 2.0
    q.set_num_updates(1000)
    assert q.temperature == pytest.approx(2.0 * 0.999995**1000)
    q.set_num_updates(10**7)
    assert q.temperature == 0.5


# -- pretraining --------------------------------------------------------------------------------


def test_presets_and_registry():
    base = wav2vec2_config("base")
    assert (base.hidden_size, base.num_layers, base.num_heads, base.ffn_dim) == (768, 12, 12, 3072)
    assert base.conv_layers == WAV2VEC2_CONV_LAYERS
    assert (base.codebook_groups, base.codebook_entries, base.final_dim) == (2, 320, 256)
    assert (base.mask_prob, base.mask_length, base.num_negatives) == (0.65, 10, 100)
    assert base.gumbel_temperature == (2.0, 0.5, 0.999995)
    large = wav2vec2_config("large")
    assert large.layer_norm_first and large.extractor_mode == "layer" and large.hidden_size == 1024
    # YAML-shaped values (lists) round-trip through the config loader
    cfg = config_from_dict(
        {"conv_layers": [[64, 10, 5], [64, 3, 2]], "gumbel_temperature": [2, 0.5, 0.99]}
    )
    assert cfg.conv_layers == [(64, 10, 5), (64, 3, 2)]
    assert cfg.gumbel_temperature == (2.0, 0.5, 0.99)
    assert get_method("wav2vec2").model_cls is Wav2Vec2Pretraining
    model = build_model("wav2vec2", preset="tiny", num_layers=1)
    assert isinstance(model, Wav2Vec2Pretraining) and model.cfg.num_layers == 1
    with pytest.raises(KeyError, match="unknown SSL method"):
        get_method("nope")


@pytest.mark.parametrize("same_masks", [True, False])
def test_forward_backward_reaches_every_parameter(same_masks):
    torch.manual_seed(0)
    model = Wav2Vec2Pretraining(
        Wav2Vec2Config(**SMALL, require_same_masks=same_masks, cross_sample_negatives=3)
    )
    batch = batch_of([speechlike(0.6, 0), speechlike(0.45, 1), speechlike(0.5, 2)])
    out = model(batch)
    assert torch.isfinite(out.loss)
    assert int(out.sample_size) > 0
    for key in ("accuracy", "code_perplexity", "prob_perplexity", "temperature", "codes_used"):
        assert key in out.stats
    assert 0 <= float(out.stats["accuracy"]) <= 1
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_masks_and_negatives_are_reproducible_from_num_updates():
    torch.manual_seed(0)
    model = Wav2Vec2Pretraining(Wav2Vec2Config(**SMALL)).eval()
    batch = batch_of([speechlike(0.5, 0), speechlike(0.5, 1)])
    model.set_num_updates(7)
    a = model(batch).loss
    model(batch)  # a second micro-batch of the same update draws other masks
    model.set_num_updates(7)
    assert model(batch).loss.item() == a.item()
    model.set_num_updates(8)
    assert model(batch).loss.item() != a.item()


def test_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    cfg = wav2vec2_config("tiny")
    model = Wav2Vec2Pretraining(cfg)
    batch = batch_of([speechlike(1.0, s) for s in range(4)])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.9, 0.98), eps=1e-6)
    losses, contrastive = [], []
    for step in range(30):
        model.set_num_updates(step)
        out = model(batch)
        opt.zero_grad()
        (out.loss / out.sample_size).backward()
        opt.step()
        losses.append(out.loss.item() / float(out.sample_size))
        contrastive.append(float(out.stats["contrastive"]))
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5])
    assert np.mean(contrastive[-5:]) < 0.85 * np.mean(contrastive[:5])


@pytest.mark.parametrize("mode", ["layer", "group"])
@pytest.mark.parametrize("pos_conv", ["weight_norm", "layer_norm_stack"])
def test_padding_invariance(mode, pos_conv):
    """An utterance in a padded batch gives the same valid frames as alone."""
    torch.manual_seed(0)
    depth = 1 if pos_conv == "weight_norm" else 3
    cfg = Wav2Vec2Config(
        **{**SMALL, "pos_conv_kernel": 5 if depth > 1 else 16},
        extractor_mode=mode,
        pos_conv_style=pos_conv,
        pos_conv_depth=depth,
    )
    model = Wav2Vec2Model(cfg).eval()
    short, long = speechlike(0.3, 0), speechlike(0.5, 1)
    with torch.no_grad():
        alone = model(short.unsqueeze(0), torch.tensor([len(short)]))
        both = model(batch_of([short, long]).wavs, torch.tensor([len(short), len(long)]))
    n = int(alone.lengths[0])
    assert int(both.lengths[0]) == n and both.hidden_states[0].shape[1] > n
    for a, b in zip(alone.hidden_states, both.hidden_states, strict=True):
        assert torch.allclose(a[0], b[0, :n], atol=1e-5), (a[0] - b[0, :n]).abs().max()


def test_ffn_outputs_and_early_exit():
    torch.manual_seed(0)
    model = Wav2Vec2Model(Wav2Vec2Config(**SMALL, layer_norm_first=True)).eval()
    wav = speechlike(0.4, 0).unsqueeze(0)
    full = model(wav, return_ffn_outputs=True)
    assert len(full.hidden_states) == 3 and len(full.ffn_outputs) == 2
    first = model(wav, num_layers=1)
    assert len(first.hidden_states) == 2
    assert torch.allclose(first.hidden_states[1], full.hidden_states[1])
    # pre-LN: the last hidden state carries the final LayerNorm, intermediate ones do not
    layer1 = model.encoder.layers[1]
    x1 = full.hidden_states[1]
    manual, ffn = layer1(x1, None)
    assert torch.allclose(ffn, full.ffn_outputs[1], atol=1e-6)
    assert torch.allclose(model.encoder.layer_norm(manual), full.hidden_states[2], atol=1e-6)


def test_export_and_load_upstream(tmp_path):
    torch.manual_seed(0)
    model = Wav2Vec2Pretraining(Wav2Vec2Config(**SMALL)).eval()
    path = save_upstream(model.export_upstream(), tmp_path / "upstream.pt")
    upstream = load_upstream(path)
    wavs = batch_of([speechlike(0.5, 0), speechlike(0.3, 1)])
    with torch.no_grad():
        out = upstream(wavs.wavs, wavs.lengths)
        ref = model.backbone(wavs.wavs, wavs.lengths)
    assert upstream.stride == 5 * 2 * 2 * 2 and upstream.num_layers == 2
    assert len(out.hidden_states) == 3
    n = int(out.lengths[1])
    assert (out.hidden_states[-1][1, n:] == 0).all()
    assert torch.allclose(out.hidden_states[-1][0], ref.hidden_states[-1][0], atol=1e-6)
    # a training checkpoint (Trainer layout) loads too
    ckpt = {
        "format": "speechssl-checkpoint-v1",
        "config": {"method": "wav2vec2", "model": model.export_upstream()["config"], "trainer": {}},
        "model": model.state_dict(),
    }
    torch.save(ckpt, tmp_path / "last.pt")
    again = load_upstream(tmp_path / "last.pt")
    with torch.no_grad():
        assert torch.allclose(
            again(wavs.wavs, wavs.lengths).hidden_states[-1], out.hidden_states[-1]
        )


def test_fbank_upstream():
    upstream = load_upstream("fbank")
    wavs = batch_of([speechlike(0.5, 0), speechlike(0.3, 1)])
    out = upstream(wavs.wavs, wavs.lengths)
    assert upstream.stride == 160 and upstream.hidden_size == 80 and upstream.num_layers == 0
    assert len(out.hidden_states) == 1 and out.hidden_states[0].shape[2] == 80
    assert out.lengths.tolist() == [48, 28]
    valid = out.hidden_states[0][0, :48]
    assert valid.mean(0).abs().max() < 1e-4  # utterance CMVN
    assert (out.hidden_states[0][1, 28:] == 0).all()


def test_masked_group_norm_is_torch_group_norm_over_each_rows_valid_frames():
    """Against torch.nn.GroupNorm(C, C): the whole batch when unpadded, each row's valid frames
    alone when padded (values and gradients); padded frames come out zero."""
    torch.manual_seed(0)
    ours, ref = MaskedGroupNorm(6), torch.nn.GroupNorm(6, 6)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5), ours.bias.uniform_(-1, 1)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, 6, 40, requires_grad=True)
    torch.testing.assert_close(ours(x, torch.tensor([40, 40, 40])), ref(x))
    lengths = [40, 25, 7]
    y = ours(x, torch.tensor(lengths))
    y.square().sum().backward()
    grad, x.grad = x.grad, None
    for row, n in enumerate(lengths):
        piece = ref(x[row : row + 1, :, :n])
        torch.testing.assert_close(y[row : row + 1, :, :n], piece)
        assert (y[row, :, n:] == 0).all()
        piece.square().sum().backward()
    torch.testing.assert_close(grad, x.grad)


def test_channel_masking_zeroes_whole_channels_after_the_time_mask():
    """fairseq's mask_channel_*: the same number of channels per row zeroed in every frame of
    the transformer input (mask embedding frames included); off, the input keeps every channel;
    a fairseq config that sets it keeps it."""
    torch.manual_seed(0)
    cfg = Wav2Vec2Config(**SMALL, mask_channel_prob=0.4, mask_channel_length=4, input_dropout=0.0)
    model = Wav2Vec2Pretraining(cfg).train()
    seen = []
    model.backbone.encoder.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    batch = batch_of([speechlike(0.5, 0), speechlike(0.5, 1), speechlike(0.5, 2)])
    with torch.no_grad():
        model.encode_masked(batch, torch.Generator().manual_seed(3))
    zero = (seen[0] == 0).all(dim=1)  # (B, D): channels that are zero in every frame
    counts = zero.sum(1).tolist()
    assert len(set(counts)) == 1 and 4 <= counts[0] <= int(0.4 * cfg.hidden_size / 4 + 1) * 4
    assert (seen[0][~zero.unsqueeze(1).expand_as(seen[0])] != 0).all()
    fairseq = to_fairseq_config(dataclasses.asdict(cfg))
    model.cfg.mask_channel_prob = 0.0
    with torch.no_grad():
        model.encode_masked(batch, torch.Generator().manual_seed(3))
    assert not (seen[1] == 0).all(dim=1).any()
    # fairseq's own field names (Wav2Vec2Config.mask_channel_prob / mask_channel_length)
    assert fairseq["model"]["mask_channel_prob"] == 0.4
    assert fairseq["model"]["mask_channel_length"] == 4


def test_combined_codebook_is_one_table_for_every_group():
    torch.manual_seed(0)
    q = GumbelVectorQuantizer(
        16, num_groups=2, num_entries=8, codevector_dim=6, combine_groups=True
    ).eval()
    assert q.codevectors.shape == (1, 8, 3) and q.num_codevectors == 16
    x = torch.randn(20, 16)
    out = q(x)
    table = q.codevectors[0]
    want = torch.cat([table[out.codes[:, 0]], table[out.codes[:, 1]]], 1)
    assert torch.equal(out.quantized, want)
    words, idx = q.sample_from_codebook(50, torch.Generator().manual_seed(1))
    assert torch.equal(words, torch.cat([table[idx[:, 0]], table[idx[:, 1]]], 1))
    assert len(idx.unique()) > 4  # uniform draws, not one entry


def test_codebook_negatives_join_the_loss():
    """codebook_negatives K adds K candidates a row: with every other negative source the same,
    the loss grows, and it backpropagates (the codevectors get a gradient)."""
    batch = batch_of([speechlike(0.6, 0), speechlike(0.6, 1)])
    losses = {}
    for k in (0, 20):
        torch.manual_seed(0)
        model = Wav2Vec2Pretraining(Wav2Vec2Config(**SMALL, codebook_negatives=k)).train()
        out = model(batch, torch.Generator().manual_seed(3))
        losses[k] = float(out.stats["contrastive"])
        if k:
            out.loss.backward()
            assert float(model.quantizer.codevectors.grad.abs().sum()) > 0
    assert losses[20] > losses[0]
    negs, same = model.codebook_negatives(
        torch.zeros(2, 7, 2, dtype=torch.long), torch.Generator().manual_seed(0)
    )
    assert negs.shape == (2, 7, 20, 32) and same.dtype == torch.bool
    assert float(same.float().mean()) < 0.1  # (0, 0) is 1 of 256 codewords


def test_fairseq_config_sets_combine_groups_and_codebook_negatives():
    from speechssl.ssl.convert import fairseq_config, to_fairseq_config

    values = dataclasses.asdict(
        wav2vec2_config("tiny", codebook_negatives=7, codebook_combine_groups=True)
    )
    cfg = to_fairseq_config(values)
    assert cfg["model"]["codebook_negatives"] == 7 and cfg["model"]["combine_groups"] is True
    model = Wav2Vec2Pretraining(wav2vec2_config("tiny"))
    back = fairseq_config(cfg, model.backbone.state_dict())
    assert back["codebook_negatives"] == 7 and back["codebook_combine_groups"] is True


def test_a_row_with_one_masked_frame_is_left_out():
    """require_same_masks=False: a row whose mask has one frame has no negative but itself; it
    must not count as a correct zero-loss row (fairseq would draw the positive as negative)."""
    torch.manual_seed(0)
    model = Wav2Vec2Pretraining(Wav2Vec2Config(**SMALL, require_same_masks=False)).eval()
    batch = batch_of([speechlike(0.5, 0), speechlike(0.5, 1)])
    frames = int(model.backbone.output_lengths(batch.lengths)[0])
    mask = torch.zeros(2, frames, dtype=torch.bool)
    mask[0, 3:9] = True  # six masked frames
    mask[1, 5] = True  # one
    model.compute_mask = lambda *args, **kwargs: mask
    out = model(batch, torch.Generator().manual_seed(0))
    assert int(out.sample_size) == 6
    assert 0 <= float(out.stats["accuracy"]) < 1  # 6 rows, not a free 7th


def test_mask_dropout_after_equalising_as_fairseq():
    """Every frame masked (p 1, spans of 1), then mask_dropout 0.5: fairseq un-masks
    rint(5 * 0.5) = 2 of 5 frames (numpy's round-half-even), leaving 3; rows equalised first."""
    mask = compute_mask_indices([5, 5], 5, 1.0, 1, 0, min_masks=0, mask_dropout=0.5)
    assert mask.sum(1).tolist() == [3, 3]
    mask = compute_mask_indices([7, 5], 7, 1.0, 1, 0, min_masks=0, mask_dropout=0.5)
    assert mask.sum(1).tolist() == [3, 3]  # 7 and 5 -> equalised to 5 -> 3 kept


def test_total_loss_recomputed_fairseq_style():
    """The whole wav2vec 2.0 loss written out here as fairseq computes it: negatives gathered
    into a (K+1)-candidate tensor, cosine / 0.1, -inf where a negative equals the positive,
    cross-entropy summed over masked frames; + 0.1 * S * (GV - prob_perplexity) / GV with the
    perplexity of the batch-averaged softmax per codebook; + 10 * S * mean(conv features^2)."""
    from speechssl.kernels.contrastive import sample_negatives

    torch.manual_seed(0)
    model = Wav2Vec2Pretraining(Wav2Vec2Config(**SMALL, dropout=0.0)).eval()
    batch = batch_of([speechlike(0.6, 0), speechlike(0.6, 1)])
    out = model(batch, torch.Generator().manual_seed(5))
    with torch.no_grad():
        feats, lengths = model.backbone.extract_features(batch.wavs, batch.lengths)
        normed = model.backbone.feature_projection.layer_norm(feats)
        y = model.backbone.feature_projection.projection(normed)
        gen = torch.Generator().manual_seed(5)
        mask = model.compute_mask(lengths, feats.shape[1], gen)
        x = torch.where(mask[..., None], model.backbone.mask_emb, y)
        hidden = model.backbone.encoder(x, lengths).hidden_states[-1]
        b, t_m = 2, int(mask[0].sum())
        pred = model.final_proj(hidden[mask]).view(b, t_m, -1)
        logits_q = model.quantizer.weight_proj(normed[mask]).view(-1, 2, 16)
        codes = logits_q.argmax(-1)
        words = torch.cat([model.quantizer.codevectors[g][codes[:, g]] for g in range(2)], -1)
        target = model.project_q(words).view(b, t_m, -1)
        neg = sample_negatives(torch.tensor([t_m, t_m]), t_m, 10, gen)
        total = 0.0
        for r in range(b):
            for t in range(t_m):
                cands = torch.cat([target[r, t][None], target[r, neg[r, t]]])
                logit = torch.cosine_similarity(pred[r, t][None], cands, dim=-1) / 0.1
                same = (cands[1:] == target[r, t]).all(-1)
                logit[1:][same] = float("-inf")
                total += float(torch.logsumexp(logit, 0) - logit[0])
        avg = logits_q.softmax(-1).mean(0)  # (G, V)
        ppl = torch.exp(-(avg * torch.log(avg + 1e-7)).sum(-1)).sum()
        s = b * t_m
        expected = total + 0.1 * s * float((32 - ppl) / 32) + 10 * s * float(feats.pow(2).mean())
    assert int(out.sample_size) == s
    assert float(out.loss) == pytest.approx(expected, rel=1e-4)
