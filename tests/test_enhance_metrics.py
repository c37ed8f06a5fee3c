"""PESQ, STOI and SI-SDR (speechssl.enhance.metrics)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from speechssl.data.kaldi import DataDir
from speechssl.enhance.metrics import (
    SI_SDR_CAP,
    MetricError,
    enhancement_scores,
    pesq_wb,
    si_sdr,
    si_sdr_improvement,
    stoi,
)


@pytest.fixture(scope="module")
def clean_speech(synth_corpus: Path) -> np.ndarray:
    """One clean utterance of the synthetic corpus's enhancement test set (~1.5 s of TTS)."""
    data = DataDir.load(synth_corpus / "noisy" / "test")
    utt = data.utt_ids[0]
    from speechssl.data.audio import load_audio

    return load_audio(data.resolve(data.tables["clean.scp"][utt])).astype(np.float64)


def add_noise(clean: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(clean.shape)
    return clean + noise * np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr_db / 10))


def test_identical_signals_score_maximal(clean_speech):
    assert pesq_wb(clean_speech, clean_speech) > 4.6  # P.862.2 ceiling is 4.64
    assert stoi(clean_speech, clean_speech) == pytest.approx(1.0, abs=1e-6)
    assert si_sdr(clean_speech, clean_speech) > 60


def test_noisier_copy_scores_lower_on_every_metric(clean_speech):
    slightly, very = add_noise(clean_speech, 20), add_noise(clean_speech, 5)
    for metric in (pesq_wb, stoi, si_sdr):
        assert metric(clean_speech, clean_speech) > metric(clean_speech, slightly)
        assert metric(clean_speech, slightly) > metric(clean_speech, very), metric.__name__
    # white noise is independent of the speech: SI-SDR is close to the SNR
    assert si_sdr(clean_speech, very) == pytest.approx(5.0, abs=0.3)


def test_enhancement_scores_and_improvement(clean_speech):
    noisy, better = add_noise(clean_speech, 5, seed=1), add_noise(clean_speech, 15, seed=2)
    scores = enhancement_scores(clean_speech, noisy, better)
    assert scores["si_sdri"] == pytest.approx(si_sdr_improvement(clean_speech, noisy, better))
    assert scores["si_sdri"] == pytest.approx(10.0, abs=0.6)
    assert scores["pesq"] > scores["pesq_noisy"] and scores["stoi"] > scores["stoi_noisy"]
    assert si_sdr_improvement(clean_speech, noisy, noisy) == 0.0


def direct_si_sdr(s: np.ndarray, e: np.ndarray) -> float:
    s, e = s - s.mean(), e - e.mean()
    target = np.dot(e, s) / np.dot(s, s) * s
    return 10 * np.log10(np.dot(target, target) / np.dot(e - target, e - target))


def test_si_sdr_matches_the_formula_and_is_scale_and_offset_invariant():
    rng = np.random.default_rng(3)
    reference = rng.standard_normal(4000)
    estimate = 0.7 * reference + 0.3 * rng.standard_normal(4000)
    value = si_sdr(reference, estimate)
    assert value == pytest.approx(direct_si_sdr(reference, estimate), abs=1e-6)
    assert si_sdr(reference, 25.0 * estimate) == pytest.approx(value, abs=1e-6)
    assert si_sdr(reference, estimate + 0.5) == pytest.approx(value, abs=1e-6)  # zero-mean
    # an error orthogonal to the (zero-mean) reference at 1/10 of its energy: exactly 10 dB
    ref0 = reference - reference.mean()
    error = rng.standard_normal(4000)
    error -= error.mean()
    error -= np.dot(error, ref0) / np.dot(ref0, ref0) * ref0
    error *= np.sqrt(0.1 * np.dot(ref0, ref0) / np.dot(error, error))
    assert si_sdr(reference, ref0 + error) == pytest.approx(10.0, abs=1e-4)


def test_si_sdr_accepts_torch_and_batches():
    rng = np.random.default_rng(4)
    reference = rng.standard_normal((3, 1000))
    estimate = reference + rng.standard_normal((3, 1000))
    batched = si_sdr(reference, estimate)
    assert batched.shape == (3,)
    assert batched[1] == pytest.approx(si_sdr(reference[1], estimate[1]))
    assert si_sdr(torch.from_numpy(reference[0]), torch.from_numpy(estimate[0])) == pytest.approx(
        batched[0]
    )


def test_bad_input_raises_clear_errors(clean_speech):
    with pytest.raises(MetricError, match="shape"):
        si_sdr(clean_speech, clean_speech[:-10])
    with pytest.raises(MetricError, match="shape"):
        pesq_wb(clean_speech, clean_speech[:-10])
    with pytest.raises(MetricError, match="shape"):
        stoi(clean_speech[:-1], clean_speech)
    with pytest.raises(MetricError, match="no speech"):
        pesq_wb(np.zeros(16000), np.zeros(16000))
    with pytest.raises(MetricError, match="16000 Hz"):
        pesq_wb(clean_speech, clean_speech, sr=8000)


def test_si_sdr_of_a_signal_with_itself_is_capped_and_scale_free():
    x = np.random.default_rng(5).standard_normal(16000)
    perfect = si_sdr(x, x)
    assert perfect == SI_SDR_CAP  # capped, not +inf or a rounding-noise value
    assert si_sdr(x, 3.0 * x) == pytest.approx(perfect, abs=1e-6)
    assert si_sdr(x, -0.5 * x) == pytest.approx(perfect, abs=1e-6)
