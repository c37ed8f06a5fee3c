"""`model.frontend: fbank` for wav2vec 2.0, HuBERT and data2vec: stacked log-Mel frames at
20 ms in place of the waveform CNN, against a hand computation; padding; pretrain -> export ->
load_upstream for each method."""

from __future__ import annotations

import pytest
import torch
from conftest import make_data_dir

from speechssl.cli import main
from speechssl.data.dataset import AudioBatch
from speechssl.features import FeatureConfig, compute_features
from speechssl.nn.fbank_frontend import FbankFrontend
from speechssl.ssl import build_model
from speechssl.upstream import load_upstream

TINY = dict(hidden_size=32, num_layers=2, num_heads=2, ffn_dim=64, pos_conv_kernel=8)
TINY |= dict(pos_conv_groups=2)


def _wavs(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    wavs = torch.zeros(len(lengths), max(lengths))
    for b, n in enumerate(lengths):
        t = torch.arange(n) / 16000
        wavs[b, :n] = 0.3 * torch.sin(2 * torch.pi * (140 + 30 * b) * t * (1 + 2 * t))
        wavs[b, :n] += 0.01 * torch.randn(n, generator=g)
    return wavs, torch.tensor(lengths)


def test_frames_are_pairs_of_normalised_fbank_frames():
    wavs, lengths = _wavs([16000, 9000])
    front = FbankFrontend()
    out, frames = front(wavs, lengths)
    # Kaldi: 1 + (16000 - 400) // 160 = 98 fbank frames -> 49 pairs; 9000 -> 54 -> 27
    assert frames.tolist() == [49, 27] == front.output_lengths(lengths).tolist()
    assert front.stride == 320 and out.shape == (2, 49, 160)
    for b, n in enumerate(lengths.tolist()):
        f = compute_features(wavs[b, :n], FeatureConfig(kind="fbank", num_mel_bins=80))
        f = (f - f.mean(0)) / f.std(0, unbiased=False).clamp(min=1e-5)
        k = int(frames[b])
        want = torch.cat([f[0 : 2 * k : 2], f[1 : 2 * k : 2]], 1)  # frame t = [f_2t, f_2t+1]
        assert torch.allclose(out[b, :k], want, atol=1e-4)
        assert float(out[b, k:].abs().sum()) == 0.0
    assert front.output_lengths(torch.tensor([399, 400, 560, 720])).tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize("method", ["wav2vec2", "hubert", "data2vec"])
def test_backbone_on_fbank_has_no_cnn_and_ignores_padding(method):
    torch.manual_seed(0)
    extra = {"average_top_k_layers": 2} if method == "data2vec" else {}
    cnn = build_model(method, preset="tiny", **TINY, **extra)
    fbank = build_model(method, preset="tiny", frontend="fbank", **TINY, **extra).eval()
    assert not any("conv_layers" in k for k in fbank.backbone.state_dict())
    assert fbank.backbone.feature_projection.projection.in_features == 160
    assert sum(p.numel() for p in fbank.parameters()) < sum(p.numel() for p in cnn.parameters())
    wavs, lengths = _wavs([16000, 7000])
    wavs[1, 7000:] = 0.5  # padding the model must not read
    with torch.no_grad():
        batch = fbank.backbone(wavs, lengths)
        alone = fbank.backbone(wavs[1:2, :7000], lengths[1:2])
    n = int(alone.lengths[0])
    assert batch.lengths.tolist() == [49, n] and n == 21
    for hb, ha in zip(batch.hidden_states, alone.hidden_states, strict=True):
        assert torch.allclose(hb[1, :n], ha[0], atol=1e-4)


def test_masked_pretraining_on_fbank_learns_a_fixed_batch():
    torch.manual_seed(0)
    model = build_model("wav2vec2", preset="tiny", frontend="fbank", **TINY).train()
    wavs, lengths = _wavs([16000, 16000, 16000])
    batch = AudioBatch(wavs, lengths, ["a", "b", "c"])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for step in range(30):
        out = model(batch, torch.Generator().manual_seed(step % 3))
        opt.zero_grad()
        (out.loss / out.sample_size).backward()
        opt.step()
        losses.append(float(out.stats["contrastive"]))
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5]), losses


@pytest.mark.parametrize("method", ["wav2vec2", "data2vec"])
def test_pretrain_export_load_with_fbank_frontend(method, tmp_path):
    data = make_data_dir(tmp_path / "data")
    sets = ["preset=tiny", "model.frontend=fbank", "model.hidden_size=32", "model.num_layers=2"]
    sets += ["model.num_heads=2", "model.ffn_dim=64", "model.pos_conv_kernel=8"]
    sets += ["model.pos_conv_groups=2", "trainer.max_updates=3", "trainer.save_every=3"]
    sets += [
        "trainer.progress_bar=false",
        "trainer.max_batch_seconds=3.0",
        "data.max_samples=16000",
    ]
    if method == "data2vec":
        sets += ["model.average_top_k_layers=2"]
    argv = ["pretrain", "--method", method, "--data", str(data), "--exp", str(tmp_path / "exp")]
    assert main(argv + [x for kv in sets for x in ("--set", kv)]) == 0
    out = tmp_path / "upstream.pt"
    assert main(["export", str(tmp_path / "exp/checkpoints/last.pt"), str(out)]) == 0
    upstream = load_upstream(out).eval()
    wavs, lengths = _wavs([16000, 8000])
    with torch.no_grad():
        res = upstream(wavs, lengths)
    assert res.stride == 320 and res.lengths.tolist() == [49, 24] and len(res.hidden_states) == 3
