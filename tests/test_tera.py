"""TERA / Mockingjay: the alterations against s3prl's recipe, the L1 loss against a hand
computation, padding, and `speechssl pretrain` -> resume -> `export` -> `load_upstream`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from speechssl.cli import main
from speechssl.data.dataset import AudioBatch
from speechssl.ssl import build_model, get_method
from speechssl.ssl.tera import (
    RANDOM,
    UNCHANGED,
    ZERO,
    MockingjayPretraining,
    TeraConfig,
    TeraPretraining,
    alter_spectrogram,
    mockingjay_config,
    tera_config,
)
from speechssl.train import load_checkpoint
from speechssl.upstream import FbankUpstream, load_upstream

SMALL = dict(hidden_size=32, num_layers=2, num_heads=2, ffn_dim=64)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _wavs(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Chirps + noise, zero-padded to the longest."""
    g = _gen(seed)
    wavs = torch.zeros(len(lengths), max(lengths))
    for b, n in enumerate(lengths):
        t = torch.arange(n) / 16000
        chirp = torch.sin(2 * torch.pi * (150 + 50 * b) * t * (1 + 2 * t))
        wavs[b, :n] = 0.3 * chirp + 0.01 * torch.randn(n, generator=g)
    return wavs, torch.tensor(lengths)


def _runs(row: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in a 1-d bool tensor."""
    edges = torch.diff(torch.cat([torch.zeros(1), row.float(), torch.zeros(1)]))
    return ((edges == -1).nonzero() - (edges == 1).nonzero()).flatten().tolist()


def test_registered_with_presets():
    tera, mj = get_method("tera"), get_method("mockingjay")
    assert tera.config_cls is mj.config_cls is TeraConfig
    assert set(tera.presets) == set(mj.presets) == {"base", "tiny"}
    base = build_model("tera", preset="base")
    assert isinstance(base, TeraPretraining) and not isinstance(base, MockingjayPretraining)
    # s3prl's TERA base: 21.33M parameters in the upstream (the head is not exported)
    assert round(sum(p.numel() for p in base.backbone.parameters()) / 1e6, 2) == 21.33
    layer = base.backbone.layers[0]
    assert (base.backbone.num_layers, layer.fc1.out_features, layer.attention.num_heads) == (
        3,
        3072,
        12,
    )
    assert not layer.layer_norm_first and base.backbone.stride == 160
    cfg = tera_config("base")
    assert (cfg.mask_proportion, cfg.mask_consecutive, cfg.mask_frequency) == (0.15, 7, 0.2)
    assert isinstance(build_model("mockingjay", preset="tiny"), MockingjayPretraining)
    for preset in ("base", "tiny"):
        assert mockingjay_config(preset).mask_frequency == 0.0
        assert mockingjay_config(preset).noise_proba == 0.0
        assert tera_config(preset).mask_frequency == 0.2


def test_time_spans_cover_15_percent_in_spans_of_7():
    feats = torch.randn(64, 300, 80)
    lengths = torch.full((64,), 300)
    alt = alter_spectrogram(feats, lengths, _gen(), mask_frequency=0.0)
    for b, starts in enumerate(alt.span_starts):
        assert len(starts) == round(300 * 0.15 / 7) == 6  # distinct starts, <= n - 8 (s3prl)
        assert len(set(starts.tolist())) == 6 and int(starts.max()) <= 300 - 8
        spans = torch.zeros(300, dtype=torch.bool)
        for s in starts.tolist():
            spans[s : s + 7] = True
        assert torch.equal(alt.time_mask[b], spans)
        assert min(_runs(alt.time_mask[b])) >= 7  # overlapping spans merge, never shorter
    # 6 x 7 / 300 = 14% before overlaps; overlaps take it to ~13.3% (s3prl's own behaviour)
    fraction = float(alt.time_mask.float().mean())
    assert abs(fraction - 0.15) <= 0.02, fraction
    # every bin of a selected frame is in the loss, nothing else (no band)
    assert torch.equal(alt.loss_mask, alt.time_mask[:, :, None].expand_as(alt.loss_mask))


def test_spans_never_reach_padding():
    feats = torch.randn(3, 300, 8)
    lengths = torch.tensor([300, 120, 20])  # 20 frames: round(20 * 0.15 / 7) = 0 spans
    feats[1, 120:] = feats[2, 20:] = 0
    for seed in range(20):
        alt = alter_spectrogram(feats, lengths, _gen(seed), mask_frequency=0.2)
        valid = torch.arange(300)[None] < lengths[:, None]
        assert not (alt.loss_mask & ~valid[:, :, None]).any()
        assert not alt.time_mask[2].any()


def test_zero_random_unchanged_split_is_80_10_10():
    feats = torch.randn(500, 60, 4)
    lengths = torch.full((500,), 60)  # one span each
    seen = {ZERO: 0, RANDOM: 0, UNCHANGED: 0}
    total = 0
    for seed in range(8):
        alt = alter_spectrogram(feats, lengths, _gen(seed), mask_frequency=0.0)
        for b in range(len(feats)):
            rows, clean = alt.inputs[b][alt.time_mask[b]], feats[b][alt.time_mask[b]]
            if bool((rows == 0).all()):
                kind = ZERO
            elif torch.equal(rows, clean):
                kind = UNCHANGED
            else:  # other frames of the same utterance
                kind = RANDOM
                assert all(bool((feats[b] == r).all(1).any()) for r in rows)
            action = int(alt.time_action[b])
            # a replacement span may be drawn at the span itself (s3prl draws them apart)
            assert action == kind or (action, kind) == (RANDOM, UNCHANGED)
            seen[action] += 1
            total += 1
            # frames outside the spans are untouched
            assert torch.equal(alt.inputs[b][~alt.time_mask[b]], feats[b][~alt.time_mask[b]])
    shares = {k: v / total for k, v in seen.items()}
    assert abs(shares[ZERO] - 0.8) < 0.025 and abs(shares[RANDOM] - 0.1) < 0.025, shares


def test_frequency_band_width_and_mockingjay_has_none():
    feats = torch.randn(200, 50, 80)
    lengths = torch.randint(30, 51, (200,))
    valid = torch.arange(50)[None] < lengths[:, None]
    feats = feats * valid[:, :, None]
    alt = alter_spectrogram(feats, lengths, _gen(), mask_proportion=0.0, mask_frequency=0.2)
    widths = alt.bands[:, 1]
    assert int(widths.max()) == int(0.2 * 80) == 16 and int(widths.min()) == 0
    for b, (first, width) in enumerate(alt.bands.tolist()):
        band = torch.zeros(80, dtype=torch.bool)
        band[first : first + width] = True
        assert torch.equal(alt.loss_mask[b], valid[b][:, None] & band[None])
        assert bool((alt.inputs[b][:, band] == 0).all())
        assert torch.equal(alt.inputs[b][:, ~band], feats[b][:, ~band])

    model = build_model("mockingjay", preset="tiny")
    for seed in range(10):
        mj = model.alter(feats, lengths, _gen(seed))
        assert not mj.noise and int(mj.bands[:, 1].max()) == 0
        assert torch.equal(mj.loss_mask, mj.time_mask[:, :, None].expand_as(mj.loss_mask))


def test_magnitude_noise_is_one_die_per_batch():
    kw = dict(mask_proportion=0.0, mask_frequency=0.0)
    feats = torch.zeros(4, 400, 80)
    alt = alter_spectrogram(feats, torch.full((4,), 400), _gen(), noise_proba=1.0, **kw)
    assert alt.noise and abs(float(alt.inputs.std()) - 0.2) < 0.005
    assert not alt.loss_mask.any()  # noise is an input alteration only
    feats, lengths = torch.zeros(2, 30, 8), torch.full((2,), 30)
    draws = [alter_spectrogram(feats, lengths, _gen(s), noise_proba=0.15, **kw) for s in range(400)]
    assert abs(sum(a.noise for a in draws) / 400 - 0.15) < 0.05
    assert all(bool((a.inputs != 0).all()) == a.noise for a in draws)  # all frames or none


def test_backbone_fbank_is_fbank_upstreams():
    wavs, lengths = _wavs([16000, 9000])
    backbone = build_model("tera", tera_config("tiny", **SMALL)).backbone
    feats, frames = backbone.features(wavs, lengths)
    ref = FbankUpstream()(wavs, lengths)
    assert frames.tolist() == ref.lengths.tolist() == [98, 54]
    assert torch.allclose(feats, ref.hidden_states[0], atol=1e-4)


def test_l1_loss_equals_hand_computation():
    torch.manual_seed(0)
    model = TeraPretraining(tera_config("tiny", **SMALL, noise_proba=1.0)).eval()
    wavs, lengths = _wavs([9600, 7200, 4000])
    batch = AudioBatch(wavs, lengths, ["a", "b", "c"])
    with torch.no_grad():
        out = model(batch, _gen(3))
        feats, frames = model.backbone.features(wavs, lengths)
        alt = model.alter(feats, frames, _gen(3))  # the same draws
        pred = model.head(model.backbone.encode(alt.inputs, frames)[-1])
    valid = torch.arange(feats.shape[1])[None] < frames[:, None]
    bins = torch.arange(80)
    first, width = alt.bands[:, :1, None], alt.bands[:, 1:, None]
    band = (bins >= first) & (bins < first + width)  # (B, 1, F)
    mask = (alt.time_mask[:, :, None] | band) & valid[:, :, None]
    assert alt.time_mask.any() and band.any() and alt.noise
    expected = F.l1_loss(pred[mask], feats[mask], reduction="sum")
    assert out.sample_size == int(mask.sum())
    assert torch.allclose(out.loss, expected, rtol=1e-5), (float(out.loss), float(expected))


def test_padding_does_not_change_valid_frames():
    torch.manual_seed(0)
    backbone = build_model("tera", tera_config("tiny", **SMALL)).backbone.eval()
    wavs, lengths = _wavs([16000, 8000, 5000])
    with torch.no_grad():
        batch = backbone(wavs, lengths)
        for b in range(3):
            n = int(lengths[b])
            alone = backbone(wavs[b : b + 1, :n], lengths[b : b + 1])
            frames = int(alone.lengths[0])
            assert int(batch.lengths[b]) == frames
            for h_batch, h_alone in zip(batch.hidden_states, alone.hidden_states, strict=True):
                assert torch.allclose(h_batch[b, :frames], h_alone[0], atol=1e-5)
                assert float(h_batch[b, frames:].abs().sum()) == 0.0  # padding zeroed


def _pretrain(data_dir: Path, exp: Path, method: str, *sets: str) -> list[dict]:
    """Train a 2-layer model (32 wide unless ``sets`` say) through the CLI; the log records of
    its updates."""
    common = ["preset=tiny", "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2",
              "model.ffn_dim=64", "trainer.lr=2e-3", "trainer.warmup_updates=3",
              "trainer.save_every=10", "trainer.log_every=5", "trainer.progress_bar=false",
              "trainer.max_batch_seconds=3.0", "data.max_samples=16000"]  # fmt: skip
    argv = ["pretrain", "--method", method, "--data", str(data_dir), "--exp", str(exp)]
    assert main(argv + [x for kv in common + list(sets) for x in ("--set", kv)]) == 0
    log = [json.loads(x) for x in (exp / "train_log.jsonl").read_text().splitlines()]
    return [r for r in log if "loss" in r]


def test_pretraining_on_synthetic_speech_learns(synth_corpus, tmp_path):
    log = _pretrain(synth_corpus / "asr/train_unlabeled", tmp_path / "tera", "tera",
                    "model.hidden_size=64", "model.ffn_dim=128", "trainer.lr=3e-3",
                    "trainer.max_updates=150", "trainer.warmup_updates=10")  # fmt: skip
    loss = [r["loss"] for r in log]
    assert len(loss) == 150
    first, last = sum(loss[:10]) / 10, sum(loss[-10:]) / 10
    assert last < 0.9 * first, (first, last)
    # and below predicting each bin's utterance mean, on the same altered bins
    zero = sum(r["zero_loss"] for r in log[-10:]) / 10
    assert last < 0.9 * zero, (last, zero)


def test_pretraining_resumes_exactly_and_exports(data_dir, tmp_path):
    assert len(_pretrain(data_dir, tmp_path / "full", "tera", "trainer.max_updates=12")) == 12
    cut = tmp_path / "cut"
    _pretrain(data_dir, cut, "tera", "trainer.max_updates=12", "trainer.stop_after=5")
    _pretrain(data_dir, cut, "tera", "trainer.max_updates=12")  # resumes from update 5
    full = load_checkpoint(tmp_path / "full/checkpoints/last.pt")["model"]
    resumed = load_checkpoint(cut / "checkpoints/last.pt")["model"]
    assert max(float((full[k] - resumed[k]).abs().max()) for k in full) <= 1e-6

    upstream_file = tmp_path / "upstream.pt"
    assert main(["export", str(tmp_path / "full/checkpoints/last.pt"), str(upstream_file)]) == 0
    saved = torch.load(upstream_file, weights_only=True)
    assert saved["method"] == "tera" and not any(k.startswith("head.") for k in saved["model"])
    upstream = load_upstream(upstream_file)
    model = build_model("tera", saved["config"])
    model.load_state_dict(full)
    wavs, lengths = _wavs([16000, 7000])
    with torch.no_grad():
        ref, out = model.backbone.eval()(wavs, lengths), upstream(wavs, lengths)
    assert upstream.stride == model.backbone.stride == out.stride == 160
    assert (upstream.num_layers, upstream.hidden_size) == (2, 32)
    assert out.lengths.tolist() == ref.lengths.tolist() == [98, 42]
    assert len(out.hidden_states) == len(ref.hidden_states) == 3
    for a, b in zip(out.hidden_states, ref.hidden_states, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_mockingjay_pretrains_and_exports_under_its_name(data_dir, tmp_path):
    exp = tmp_path / "mj"
    assert len(_pretrain(data_dir, exp, "mockingjay", "trainer.max_updates=2")) == 2
    assert load_checkpoint(exp / "checkpoints/last.pt")["config"]["model"]["mask_frequency"] == 0
    out = tmp_path / "mj.pt"
    assert main(["export", str(exp / "checkpoints/last.pt"), str(out)]) == 0
    assert torch.load(out, weights_only=True)["method"] == "mockingjay"
    assert load_upstream(out).method == "mockingjay"


@pytest.mark.parametrize(("field", "value"), [("mask_frequency", 1.5), ("num_heads", 5)])
def test_bad_config_is_named(field, value):
    with pytest.raises(ValueError, match=field):
        tera_config("tiny", **{field: value})
