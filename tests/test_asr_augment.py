"""The noisy student's input noise: speed perturbation measured by the tone's frequency and the
length, additive noise by the SNR of (noisy - clean), and the draws tied to the batch seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_asr_model import _asr_dir

from speechssl.asr.augment import AugmentConfig, change_speed, perturb
from speechssl.asr.dataset import ASRDataset, JointASRDataset
from speechssl.asr.tokenizer import build_tokenizer
from speechssl.data.dataset import BatchIndices

SR = 16000


def _peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / SR)[spectrum.argmax()])


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_tempo_and_pitch_together(factor):
    t = np.arange(SR) / SR
    tone = torch.from_numpy(np.sin(2 * np.pi * 1000 * t).astype(np.float32))
    out = change_speed(tone, factor).numpy()
    assert abs(len(out) - SR / factor) <= 2
    assert _peak_hz(out) == pytest.approx(1000 * factor, abs=3)


def test_additive_noise_lands_in_the_snr_range():
    rng = np.random.default_rng(0)
    speech = torch.from_numpy(rng.standard_normal(SR).astype(np.float32))
    cfg = AugmentConfig(noise_prob=1.0, noise_snr=[5.0, 15.0], noise_families=["pink", "hum"])
    snrs = []
    for seed in range(20):
        noisy = perturb(speech, cfg, np.random.default_rng(seed)).numpy()
        noise = noisy - speech.numpy()
        snrs.append(10 * np.log10(np.sum(speech.numpy() ** 2) / np.sum(noise**2)))
    assert 5.0 - 1e-3 <= min(snrs) and max(snrs) <= 15.0 + 1e-3
    assert max(snrs) - min(snrs) > 3  # drawn, not fixed
    off = AugmentConfig(noise_prob=0.0)
    assert torch.equal(perturb(speech, off, np.random.default_rng(0)), speech)


def test_bad_settings_name_the_field():
    with pytest.raises(ValueError, match="augment.speed"):
        AugmentConfig(speed=[3.0])
    with pytest.raises(ValueError, match="augment.noise_families"):
        AugmentConfig(noise_families=["babble"])


def test_dataset_noise_follows_the_batch_seed(tmp_path):
    data = _asr_dir(tmp_path / "d", n=3)
    tok = build_tokenizer("char", ["abab", "bbaa"], tmp_path / "tok")
    cfg = AugmentConfig(speed=[0.9, 1.1], noise_prob=1.0)
    noisy = ASRDataset(data, tok, augment=cfg)
    clean = ASRDataset(data, tok)
    a = noisy.__getitems__(BatchIndices([0, 1, 2], seed=7))
    b = noisy.__getitems__(BatchIndices([0, 1, 2], seed=7))
    c = noisy.__getitems__(BatchIndices([0, 1, 2], seed=8))
    ref = clean.__getitems__(BatchIndices([0, 1, 2], seed=7))
    assert all(torch.equal(x.wav, y.wav) for x, y in zip(a, b, strict=True))  # a resume
    assert any(len(x.wav) != len(y.wav) or not torch.equal(x.wav, y.wav)
               for x, y in zip(a, c, strict=True))  # fmt: skip
    assert all(len(x.wav) != len(r.wav) for x, r in zip(a, ref, strict=True))  # speed changed
    assert all(torch.equal(x.labels, r.labels) for x, r in zip(a, ref, strict=True))
    joint = JointASRDataset(clean, noisy, 0.5)
    items = joint.__getitems__(BatchIndices(list(range(len(joint))), seed=3))
    assert all(len(it.wav) == len(r.wav) for it, r in zip(items[:3], ref, strict=True))
