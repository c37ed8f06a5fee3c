"""Noise families and mixing at a given SNR.

Families: ``white``, ``pink`` (1/f power), ``brown`` (1/f^2), ``babble`` (several other voices
talking at once; the speech is rendered by the caller and passed in), ``hum`` (50 or 60 Hz mains
and its harmonics), ``tones`` (random beeps and whistles) and ``clicks`` (sparse short impulses
over a faint floor). Every generator draws only from the ``numpy.random.Generator`` it is given,
so a mixture is reproducible from its utterance seed.

SNR convention: ``10 log10(sum(clean^2) / sum(noise^2))`` over the whole utterance, i.e. the SNR
that ``noisy - clean`` measures against ``clean``.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
FAMILIES = ("white", "pink", "brown", "babble", "hum", "tones", "clicks")


def _normalized(x: np.ndarray) -> np.ndarray:
    rms = np.sqrt(np.mean(np.square(x, dtype=np.float64)))
    return (x / rms).astype(np.float32) if rms > 0 else x.astype(np.float32)


def _colored(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Gaussian noise whose power falls as 1/f^exponent (shaped in the frequency domain)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum *= 1 / np.maximum(freqs, 20.0) ** (exponent / 2)  # flat below 20 Hz: no DC blow-up
    spectrum[0] = 0
    return _normalized(np.fft.irfft(spectrum, n))


def _hum(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    mains = 50.0 if rng.random() < 0.5 else 60.0
    mains *= 1 + rng.uniform(-0.005, 0.005)  # grid frequency drifts a little
    x = np.zeros(n)
    for k in range(1, 11):
        amp = rng.uniform(0.2, 1.0) / k ** rng.uniform(0.5, 1.5)
        x += amp * np.sin(2 * np.pi * k * mains * t + rng.uniform(0, 2 * np.pi))
    return _normalized(x + 0.02 * rng.standard_normal(n))


def _tones(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    x = np.zeros(n)
    for _ in range(int(rng.integers(1, 5))):
        freq = rng.uniform(300, 4000)
        tone = np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
        if rng.random() < 0.6:  # beeping: on/off gate with 5 ms ramps
            period = int(rng.uniform(0.2, 1.0) * SAMPLE_RATE)
            gate = (np.arange(n) % period) < rng.uniform(0.3, 0.7) * period
            ramp = np.hanning(160)
            tone *= np.clip(np.convolve(gate, ramp / ramp.sum(), mode="same"), 0, 1)
        x += rng.uniform(0.3, 1.0) * tone
    return _normalized(x + 0.01 * rng.standard_normal(n))


def _clicks(n: int, rng: np.random.Generator) -> np.ndarray:
    x = 0.02 * rng.standard_normal(n)
    count = max(1, int(rng.uniform(3, 30) * n / SAMPLE_RATE))
    for pos in rng.integers(0, n, count):
        length = int(rng.integers(16, 64))  # 1-4 ms decaying burst
        burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 4))
        end = min(n, pos + length)
        x[pos:end] += rng.uniform(1, 10) * burst[: end - pos]
    return _normalized(x)


def babble(n: int, rng: np.random.Generator, talkers: list[np.ndarray]) -> np.ndarray:
    """Sum of talkers, each looped to length ``n`` from a random start, at random relative gains."""
    if not talkers:
        raise ValueError("babble noise needs at least one talker's speech")
    x = np.zeros(n)
    for speech in talkers:
        loop = np.tile(speech, n // len(speech) + 2)
        start = int(rng.integers(0, len(speech)))
        x += 10 ** (rng.uniform(-6, 0) / 20) * _normalized(loop[start : start + n])
    return _normalized(x)


def make_noise(
    family: str, n: int, rng: np.random.Generator, talkers: list[np.ndarray] | None = None
) -> np.ndarray:
    """``n`` samples of unit-RMS noise of the given family (float32)."""
    if family == "white":
        return _normalized(rng.standard_normal(n))
    if family == "pink":
        return _colored(n, rng, 1.0)
    if family == "brown":
        return _colored(n, rng, 2.0)
    if family == "babble":
        return babble(n, rng, talkers or [])
    if family == "hum":
        return _hum(n, rng)
    if family == "tones":
        return _tones(n, rng)
    if family == "clicks":
        return _clicks(n, rng)
    raise ValueError(f"unknown noise family {family!r}; known: {', '.join(FAMILIES)}")


def scale_to_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Scale ``noise`` so that ``clean`` over it has the given SNR (whole-utterance energy)."""
    clean_power = np.mean(np.square(clean, dtype=np.float64))
    noise_power = np.mean(np.square(noise, dtype=np.float64))
    if noise_power == 0:
        raise ValueError("cannot scale all-zero noise to an SNR")
    gain = np.sqrt(clean_power / (noise_power * 10 ** (snr_db / 10)))
    return (noise * gain).astype(np.float32)


def add_at_random_snr(speech: np.ndarray, sample_noise, rng: np.random.Generator, snr_range) -> np.ndarray:  # fmt: skip
    """``speech`` plus ``sample_noise(len(speech), rng)`` scaled to an SNR drawn uniformly from
    ``snr_range`` (``[lo, hi]``, or one value; the draw comes before the noise's), float32."""
    lo, hi = (snr_range[0], snr_range[-1]) if len(snr_range) else (0.0, 0.0)
    snr = float(rng.uniform(lo, hi)) if hi > lo else float(lo)
    noise = sample_noise(len(speech), rng)
    return (speech + scale_to_snr(speech, noise, snr)).astype(np.float32)


def measured_snr(clean: np.ndarray, noisy: np.ndarray) -> float:
    """SNR in dB of ``noisy`` against its clean reference."""
    noise = noisy.astype(np.float64) - clean
    return float(10 * np.log10(np.sum(np.square(clean, dtype=np.float64)) / np.sum(noise**2)))
