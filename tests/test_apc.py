"""APC: causality, the L1 loss against a hand computation, padding, and `speechssl pretrain` ->
`export` -> `load_upstream` on a few generated utterances."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import make_data_dir

from speechssl.cli import main
from speechssl.config import ConfigError
from speechssl.data.dataset import AudioBatch
from speechssl.features import FeatureConfig, compute_features
from speechssl.ssl import build_model, get_method
from speechssl.ssl.apc import APCConfig, APCPretraining, apc_config
from speechssl.train import load_checkpoint
from speechssl.upstream import FbankUpstream, load_upstream

FBANK = FeatureConfig(kind="fbank", num_mel_bins=80)


def _model(**overrides) -> APCPretraining:
    torch.manual_seed(0)
    return APCPretraining(apc_config("tiny", hidden_size=32, **overrides)).eval()


def _wavs(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Chirps + noise, zero-padded to the longest."""
    g = torch.Generator().manual_seed(seed)
    wavs = torch.zeros(len(lengths), max(lengths))
    for b, n in enumerate(lengths):
        t = torch.arange(n) / 16000
        chirp = torch.sin(2 * torch.pi * (150 + 50 * b) * t * (1 + 2 * t))
        wavs[b, :n] = 0.3 * chirp + 0.01 * torch.randn(n, generator=g)
    return wavs, torch.tensor(lengths)


def _hand_fbank(wav: torch.Tensor) -> torch.Tensor:
    """80-d Kaldi fbank with per-utterance mean/variance normalisation, written out here."""
    f = compute_features(wav, FBANK)
    return (f - f.mean(0)) / f.std(0, unbiased=False).clamp(min=1e-5)


def test_registered_with_presets():
    method = get_method("apc")
    assert method.config_cls is APCConfig and set(method.presets) == {"base", "tiny"}
    base = build_model("apc", preset="base")
    assert isinstance(base, APCPretraining)
    assert [type(r).__name__ for r in base.backbone.rnns] == ["GRU"] * 3
    assert base.backbone.rnns[0].hidden_size == 512 and base.backbone.rnns[0].input_size == 512
    assert (base.cfg.dropout, base.cfg.residual, base.cfg.n_future) == (0.1, True, 3)
    assert base.postnet.out_features == 80
    lstm = build_model("apc", preset="tiny", rnn="lstm")
    assert all(isinstance(r, torch.nn.LSTM) for r in lstm.backbone.rnns)
    with pytest.raises(ConfigError, match="rnn must be one of"):
        apc_config("tiny", rnn="transformer")


def test_backbone_fbank_is_fbank_upstreams():
    wavs, lengths = _wavs([16000, 9000])
    model = _model()
    feats, frames = model.backbone.features(wavs, lengths)
    ref = FbankUpstream()(wavs, lengths)
    assert frames.tolist() == ref.lengths.tolist() == [98, 54]
    assert torch.allclose(feats, ref.hidden_states[0], atol=1e-4)
    assert model.backbone.stride == 160


def test_residual_connections_from_the_second_layer():
    feats = torch.randn(2, 20, 80)
    for residual in (True, False):
        backbone = _model(residual=residual).backbone
        with torch.no_grad():
            h = backbone.encode(feats)
            assert torch.allclose(h[0], backbone.input_projection(feats))
            assert torch.allclose(h[1], backbone.rnns[0](h[0])[0])  # no residual on layer 1
            for i in (2, 3):
                step = backbone.rnns[i - 1](h[i - 1])[0]
                assert torch.allclose(h[i], step + h[i - 1] if residual else step, atol=1e-6)


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
def test_causal_over_features(rnn):
    model = _model(rnn=rnn, num_layers=3)
    feats = torch.randn(1, 60, 80)
    changed = feats.clone()
    t = 30
    changed[:, t + 1 :] += torch.randn(1, 60 - t - 1, 80)
    with torch.no_grad():
        before, after = model.backbone.encode(feats), model.backbone.encode(changed)
        preds = [model.postnet(h[-1]) for h in (before, after)]
    assert len(before) == 4
    for a, b in zip(before + preds[:1], after + preds[1:], strict=True):
        assert torch.allclose(a[:, : t + 1], b[:, : t + 1], atol=1e-6)  # frames <= t unchanged
        assert float((a[:, t + 1 :] - b[:, t + 1 :]).abs().amax(-1).min()) > 1e-4  # later all do


def test_causal_over_the_waveform_without_utterance_cmvn():
    wavs, lengths = _wavs([12000])
    changed = wavs.clone()
    start = 8000  # frames t whose window [160 t, 160 t + 400) ends by sample 8000: t <= 47
    changed[0, start:] = 0.3 * torch.randn(12000 - start)
    causal = _model(utterance_cmvn=False)
    with torch.no_grad():
        a, b = causal.backbone(wavs, lengths), causal.backbone(changed, lengths)
    for ha, hb in zip(a.hidden_states, b.hidden_states, strict=True):
        assert torch.allclose(ha[:, :48], hb[:, :48], atol=1e-5)
        assert float((ha[:, 48:] - hb[:, 48:]).abs().amax(-1).min()) > 1e-4
    # the utterance normalisation sees the whole utterance: frame 0 moves too
    with torch.no_grad():
        a, b = _model().backbone(wavs, lengths), _model().backbone(changed, lengths)
    assert float((a.hidden_states[-1][:, 0] - b.hidden_states[-1][:, 0]).abs().max()) > 1e-4


def test_l1_loss_equals_hand_computation_with_padding():
    lengths = [16000, 11000, 560]  # 98, 67 and 2 frames; the last has none to predict (n = 3)
    wavs, lens = _wavs(lengths)
    wavs[1, 11000:] = 0.5  # padding the model must not read
    model = _model()
    out = model(AudioBatch(wavs, lens, ["a", "b", "c"]))
    preds, targets, copies = [], [], []
    with torch.no_grad():
        for b, n in enumerate(lengths):
            x = _hand_fbank(wavs[b, :n])
            h = model.backbone.encode(x[None])[-1][0]  # this utterance alone
            preds.append(model.postnet(h[:-3]))
            targets.append(x[3:])
            copies.append(x[:-3])
    pred, target = torch.cat(preds), torch.cat(targets)
    assert out.sample_size == 95 + 64 + 0 == len(target)
    expected = F.l1_loss(pred, target, reduction="sum") / 80
    assert torch.allclose(out.loss.detach(), expected, rtol=1e-4)
    assert torch.allclose(out.loss.detach() / out.sample_size, F.l1_loss(pred, target), rtol=1e-4)
    copy = F.l1_loss(torch.cat(copies), target)
    assert torch.allclose(out.stats["copy_loss"], copy, rtol=1e-4)
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_outputs_alone_equal_outputs_in_a_padded_batch():
    wavs, lengths = _wavs([16000, 7000, 12000])
    wavs[1, 7000:] = torch.randn(9000)  # garbage, not silence, after utterance 1
    backbone = _model().backbone
    with torch.no_grad():
        batch = backbone(wavs, lengths)
        alone = backbone(wavs[1:2, :7000], lengths[1:2])
    n = int(alone.lengths[0])
    assert n == int(batch.lengths[1]) == 42
    for hb, ha in zip(batch.hidden_states, alone.hidden_states, strict=True):
        assert torch.allclose(hb[1, :n], ha[0], atol=1e-5)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    """An APC run of 80 updates on the generated chirps; its exp dir and per-update losses."""
    root = tmp_path_factory.mktemp("apc")
    data = make_data_dir(root / "data")
    sets = ["preset=tiny", "model.hidden_size=64", "trainer.max_updates=80", "trainer.lr=1e-2"]
    sets += ["trainer.warmup_updates=2", "trainer.weight_decay=0.0", "trainer.save_every=80"]
    sets += ["trainer.log_every=1", "trainer.progress_bar=false", "trainer.max_batch_seconds=3.0"]
    sets += ["data.max_samples=16000"]
    argv = ["pretrain", "--method", "apc", "--data", str(data), "--exp", str(root / "exp")]
    assert main(argv + [x for kv in sets for x in ("--set", kv)]) == 0
    log = [json.loads(x) for x in (root / "exp/train_log.jsonl").read_text().splitlines()]
    return root / "exp", [r["loss"] for r in log if "loss" in r]


def test_pretraining_lowers_the_loss(pretrained):
    _, losses = pretrained
    assert len(losses) == 80
    # about 0.78 -> 0.60; the floor is high: the noise-only mel bins, normalised to unit
    # variance, cannot be predicted
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.85 * first, (first, last)


def test_exported_upstream_matches_the_trained_backbone(pretrained, tmp_path):
    exp, _ = pretrained
    ckpt = load_checkpoint(exp / "checkpoints/last.pt")
    assert ckpt["config"]["method"] == "apc"
    model = APCPretraining(APCConfig(**ckpt["config"]["model"]))
    model.load_state_dict(ckpt["model"])
    model.eval()

    out_file = tmp_path / "upstream.pt"
    assert main(["export", str(exp / "checkpoints/last.pt"), str(out_file)]) == 0
    saved = torch.load(out_file, weights_only=True)
    assert saved["method"] == "apc" and not any(k.startswith("postnet") for k in saved["model"])
    upstream = load_upstream(out_file)
    assert (upstream.stride, upstream.num_layers, upstream.hidden_size) == (160, 3, 64)

    wavs, lengths = _wavs([16000, 8000])
    with torch.no_grad():
        got = upstream(wavs, lengths)
        want = model.backbone(wavs, lengths)
    assert got.stride == 160 and got.lengths.tolist() == [98, 48]
    assert [FBANK.num_frames(n) for n in lengths.tolist()] == [98, 48]
    assert len(got.hidden_states) == 4
    for g, w in zip(got.hidden_states, want.hidden_states, strict=True):
        assert torch.allclose(g[0], w[0], atol=1e-6) and torch.allclose(g[1, :48], w[1, :48])
        assert float(g[1, 48:].abs().max()) == 0.0  # padding zeroed
