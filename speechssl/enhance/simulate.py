"""Noise simulation for enhancement training: mix speech (clean or already noisy) with noise at
a target SNR, from the synthetic corpus's noise families or from a folder of noise recordings.

Every draw comes from the ``numpy.random.Generator`` passed in, so a mixture is a function of
its seed: the training datasets draw one generator per (batch seed, utterance), which gives fresh
noise every epoch and the same noise again after a resume.

SNR convention (as the corpus's): ``10 log10(sum(speech^2) / sum(noise^2))`` over the segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from speechssl.data.audio import SAMPLE_RATE, load_audio
from speechssl.data.synth.noise import FAMILIES, add_at_random_snr, make_noise
from speechssl.errors import SpeechSSLError

# babble needs other talkers' speech, which a noise bank does not hold; the corpus has it.
SIMULATED_FAMILIES = tuple(f for f in FAMILIES if f != "babble")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


class NoiseError(SpeechSSLError, ValueError):
    """A noise source cannot be used (unknown family, empty folder ...)."""


class NoiseBank:
    """Where noise comes from: synthetic ``families`` (``white pink brown hum tones clicks``),
    or the recordings of ``folder`` (wav/flac/ogg, any rate, read at 16 kHz mono on first use;
    a random stretch of a random file, looped when shorter than the speech).

    ``sample(n, rng)`` returns ``n`` samples of unit-RMS noise.
    """

    def __init__(self, families: Sequence[str] = SIMULATED_FAMILIES, folder: str | None = None):
        self.folder = Path(folder) if folder else None
        self.families = tuple(families)
        self._files: list[Path] = []
        self._cache: dict[Path, np.ndarray] = {}
        if self.folder is not None:
            if not self.folder.is_dir():
                raise NoiseError(f"noise folder {self.folder}: not a directory")
            self._files = sorted(
                p for p in self.folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES
            )
            if not self._files:
                raise NoiseError(
                    f"noise folder {self.folder}: no {'/'.join(AUDIO_SUFFIXES)} files in it"
                )
        else:
            unknown = [f for f in self.families if f not in SIMULATED_FAMILIES]
            if unknown or not self.families:
                raise NoiseError(
                    f"noise families {list(self.families)}: choose from "
                    f"{', '.join(SIMULATED_FAMILIES)} (babble needs speech: use the corpus's "
                    "noisy copies or a folder of babble recordings)"
                )

    def _recording(self, path: Path) -> np.ndarray:
        if path not in self._cache:
            wav = load_audio(path, SAMPLE_RATE, resample=True)
            if not np.any(wav):
                raise NoiseError(f"noise file {path}: all samples are zero")
            self._cache[path] = wav / np.sqrt(np.mean(np.square(wav, dtype=np.float64)))
        return self._cache[path]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.folder is not None:
            rec = self._recording(self._files[int(rng.integers(len(self._files)))])
            loop = np.tile(rec, n // len(rec) + 2)
            start = int(rng.integers(len(rec)))
            return loop[start : start + n].astype(np.float32)
        return make_noise(self.families[int(rng.integers(len(self.families)))], n, rng)


def add_noise(
    speech: np.ndarray,
    bank: NoiseBank,
    rng: np.random.Generator,
    snr_range: Sequence[float],
) -> np.ndarray:
    """``speech`` plus noise from ``bank`` at an SNR drawn uniformly from ``snr_range``
    (``[lo, hi]``, or one value)."""
    return add_at_random_snr(speech, bank.sample, rng, snr_range)
