"""CPC: the loss against a direct InfoNCE computation, negative sampling (utterance / speaker /
batch), the encoder's frame bookkeeping, padding, causality of the context, and
`speechssl pretrain` -> `export` -> `load_upstream` with step-1 accuracy above chance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_data_dir

from speechssl.cli import main
from speechssl.config import ConfigError
from speechssl.data.dataset import AudioBatch
from speechssl.kernels.contrastive import sample_cross_negatives
from speechssl.ssl import build_model, get_method
from speechssl.ssl.cpc import ChannelNorm, CPCConfig, CPCPretraining, cpc_config
from speechssl.upstream import load_upstream


def _model(**overrides) -> CPCPretraining:
    torch.manual_seed(0)
    values = dict(encoder_dim=24, context_dim=24, num_steps=4, num_negatives=6) | overrides
    return CPCPretraining(cpc_config("tiny", **values)).eval()


def _wavs(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    wavs = torch.zeros(len(lengths), max(lengths))
    for b, n in enumerate(lengths):
        t = torch.arange(n) / 16000
        wavs[b, :n] = 0.3 * torch.sin(2 * torch.pi * (120 + 40 * b) * t * (1 + 3 * t))
        wavs[b, :n] += 0.02 * torch.randn(n, generator=g)
    return wavs, torch.tensor(lengths)


def test_registered_with_presets_and_the_modified_cpc_size():
    method = get_method("cpc")
    assert method.config_cls is CPCConfig and set(method.presets) == {"base", "tiny"}
    base = build_model("cpc", preset="base")
    # CPC_audio's 60k_epoch4 checkpoint: 1.84M parameters in encoder + LSTM (reference §3)
    assert sum(p.numel() for p in base.backbone.parameters()) == pytest.approx(1.84e6, rel=0.01)
    assert isinstance(base.backbone.context[0], torch.nn.LSTM) and len(base.heads) == 12
    assert (base.cfg.num_negatives, base.cfg.negatives) == (128, "speaker")
    with pytest.raises(ConfigError, match="negatives must be one of"):
        cpc_config("tiny", negatives="everywhere")


def test_encoder_gives_one_frame_per_10_ms():
    model = _model()
    wavs, lengths = _wavs([20480, 16000, 3200])
    out = model.backbone(wavs, lengths)
    assert model.backbone.stride == 160
    assert out.lengths.tolist() == [128, 100, 20]  # S / 160 (CPC_audio's 20480 -> 128)
    assert out.features.shape == (3, 128, 24) and len(out.hidden_states) == 2


def test_channel_norm_is_per_frame_over_channels():
    norm = ChannelNorm(5)
    with torch.no_grad():
        norm.weight.copy_(torch.arange(1.0, 6.0).view(1, 5, 1))
        norm.bias.fill_(0.5)
    x = torch.randn(2, 5, 7)
    want = torch.empty_like(x)
    for b in range(2):
        for t in range(7):
            v = x[b, :, t]
            mean, var = v.sum() / 5, ((v - v.sum() / 5) ** 2).sum() / 4  # unbiased, by hand
            want[b, :, t] = (v - mean) / torch.sqrt(var + 1e-5) * torch.arange(1.0, 6.0) + 0.5
    assert torch.allclose(norm(x), want, atol=1e-5)


def test_padded_batch_equals_each_utterance_alone():
    wavs, lengths = _wavs([12000, 7000])
    wavs[1, 7000:] = 0.0
    backbone = _model().backbone
    with torch.no_grad():
        batch = backbone(wavs, lengths)
        alone = backbone(wavs[1:2, :7000], lengths[1:2])
    n = int(alone.lengths[0])
    assert n == int(batch.lengths[1]) == 43
    for hb, ha in zip(batch.hidden_states, alone.hidden_states, strict=True):
        assert torch.allclose(hb[1, :n], ha[0], atol=1e-5)


def test_context_is_causal_over_encoder_frames():
    backbone = _model().backbone
    z = torch.randn(1, 40, 24)
    changed = z.clone()
    changed[:, 21:] += 1.0
    with torch.no_grad():
        a, b = backbone.context[0](z)[0], backbone.context[0](changed)[0]
    assert torch.allclose(a[:, :21], b[:, :21]) and not torch.allclose(a[:, 21:], b[:, 21:])


@pytest.mark.parametrize("negatives", ["utterance", "speaker", "batch"])
def test_loss_equals_direct_infonce(negatives):
    model = _model(negatives=negatives)
    wavs, lengths = _wavs([9600, 8000, 6400])
    batch = AudioBatch(wavs, lengths, ["a", "b", "c"], speakers=["s1", "s2", "s1"])
    out = model(batch, torch.Generator().manual_seed(7))
    with torch.no_grad():
        enc = model.backbone(wavs, lengths)
        z, c, n = enc.features, enc.hidden_states[-1], enc.lengths.tolist()
        neg, cross = model.sample(
            enc.lengths, z.shape[1], torch.Generator().manual_seed(7), batch.speakers
        )
        flat = z.reshape(-1, z.shape[2])
        total, rows, correct1 = 0.0, 0, 0
        for k, head in enumerate(model.heads, start=1):
            for b in range(3):
                for t in range(n[b] - k):  # context frame t predicts z_{t+k}
                    p = head.weight @ c[b, t] + head.bias
                    cands = [z[b, t + k]]
                    if cross is None:
                        cands += [z[b, j] for j in neg[b, t + k].tolist()]
                    else:
                        cands += [flat[j] for j in cross[b, t + k].tolist()]
                    logits = torch.stack([p @ y for y in cands])
                    total += float(torch.logsumexp(logits, 0) - logits[0])
                    rows += 1
                    correct1 += k == 1 and int(logits.argmax()) == 0
    assert out.sample_size == rows == sum(max(m - k, 0) for m in n for k in range(1, 5))
    assert float(out.loss.detach()) == pytest.approx(total, rel=1e-5)
    assert float(out.stats["acc_1"]) == pytest.approx(correct1 / sum(m - 1 for m in n))


def test_speaker_negatives_stay_within_the_speaker():
    counts = torch.tensor([30, 20, 25, 10])
    groups = torch.tensor([0, 1, 0, 2])
    idx = sample_cross_negatives(counts, 30, 50, torch.Generator().manual_seed(0), groups)
    utt, frame = idx // 30, idx % 30
    for b in range(4):
        rows = slice(0, int(counts[b]))
        assert (groups[utt[b, rows]] == groups[b]).all()  # same speaker only
        assert (frame[b, rows] < counts[utt[b, rows]]).all()  # valid frames only
        own = torch.arange(int(counts[b]))[:, None] + 30 * b
        assert not (idx[b, rows] == own).any()  # never the frame itself
    assert set(utt[0, :30].unique().tolist()) == {0, 2}  # both of speaker 0's utterances
    assert set(utt[3, :10].unique().tolist()) == {3}  # a speaker alone: its own utterance
    assert (idx[1, 20:] == 0).all()  # padding rows


def test_speaker_negatives_need_speakers():
    model = _model(negatives="speaker")
    wavs, lengths = _wavs([6400, 6400])
    with pytest.raises(ValueError, match="utt2spk"):
        model(AudioBatch(wavs, lengths, ["a", "b"]))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """A small CPC run of 60 updates on generated chirps; its exp dir and log records."""
    root = tmp_path_factory.mktemp("cpc")
    data = make_data_dir(root / "data", speakers=3, per_speaker=4)
    sets = ["preset=tiny", "model.encoder_dim=32", "model.context_dim=32", "model.num_negatives=8"]
    sets += ["trainer.max_updates=60", "trainer.lr=3e-3", "trainer.warmup_updates=5"]
    sets += ["trainer.save_every=60", "trainer.log_every=1", "trainer.progress_bar=false"]
    sets += ["trainer.max_batch_seconds=3.0", "data.max_samples=8000"]
    argv = ["pretrain", "--method", "cpc", "--data", str(data), "--exp", str(root / "exp")]
    assert main(argv + [x for kv in sets for x in ("--set", kv)]) == 0
    log = [json.loads(x) for x in (root / "exp/train_log.jsonl").read_text().splitlines()]
    return root / "exp", [r for r in log if "loss" in r]


def test_pretraining_predicts_above_chance(pretrained):
    _, log = pretrained
    assert len(log) == 60
    first = sum(r["loss"] for r in log[:6]) / 6
    last = sum(r["loss"] for r in log[-6:]) / 6
    assert last < 0.8 * first, (first, last)  # chance: ln 9 = 2.20 nats
    acc1 = sum(r["acc_1"] for r in log[-6:]) / 6
    assert acc1 > 3 / 9, acc1  # three times chance (1 positive among 9 candidates)


def test_exported_upstream_is_the_backbone(pretrained, tmp_path):
    exp, _ = pretrained
    out_file = tmp_path / "upstream.pt"
    assert main(["export", str(exp / "checkpoints/last.pt"), str(out_file)]) == 0
    saved = torch.load(out_file, weights_only=True)
    assert saved["method"] == "cpc" and not any(k.startswith("heads") for k in saved["model"])
    upstream = load_upstream(out_file)
    assert (upstream.stride, upstream.num_layers, upstream.hidden_size) == (160, 1, 32)
    wavs, lengths = _wavs([8000, 4800])
    with torch.no_grad():
        got = upstream(wavs, lengths)
    assert got.lengths.tolist() == [50, 30] and len(got.hidden_states) == 2
    assert float(got.hidden_states[1][1, 30:].abs().max()) == 0.0  # padding zeroed


def test_pretrain_summary_reports_the_run(pretrained, tmp_path):
    """tools/pretrain_summary.py on this run: the loss drop and accuracy of its log, and a
    nonzero output variance (no collapse) from the exported upstream."""
    exp, log = pretrained
    run = tmp_path / "cpc_small"
    run.mkdir()
    (run / "train_log.jsonl").write_text((exp / "train_log.jsonl").read_text())
    assert main(["export", str(exp / "checkpoints/last.pt"), str(run / "upstream.pt")]) == 0
    data = make_data_dir(tmp_path / "data", speakers=2, per_speaker=2, seed=5)
    tool = Path(__file__).resolve().parents[1] / "tools" / "pretrain_summary.py"
    proc = subprocess.run(
        [sys.executable, str(tool), "--data", str(data), str(run)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    row = proc.stdout.strip().splitlines()[-1].split("|")
    first, last = (sum(r["loss"] for r in part) / 6 for part in (log[:6], log[-6:]))
    assert row[1].strip() == "cpc_small" and row[2].strip() == "60"
    assert float(row[3]) == pytest.approx(first, abs=1e-3)
    assert float(row[4]) == pytest.approx(last, abs=1e-3)
    assert row[6].strip().endswith("(acc_1)") and float(row[8]) > 1e-3
