"""Input noise for ASR training (the noisy student's): speed perturbation and additive noise.

Both act on the waveform before the upstream, so they compose with the model's own noise
(SpecAugment on the hidden states, dropout). Every draw comes from a ``numpy.random.Generator``
seeded by (batch seed, utterance index), so a resumed run sees the same perturbed audio as an
uninterrupted one.

- ``speed``: one factor per utterance drawn from the list (Ko et al. 2015 used 0.9/1.0/1.1):
  the waveform is resampled by ``1/factor``, which changes tempo and pitch together, the way
  Kaldi's ``sox speed`` does.
- ``noise_prob``: the probability that an utterance gets additive noise from one of the
  synthetic corpus's noise families (babble excepted: it needs other talkers) at an SNR drawn
  uniformly from ``noise_snr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial

import numpy as np
import torch

from speechssl.data.synth.noise import FAMILIES, add_at_random_snr, make_noise

NOISE_FAMILIES = tuple(f for f in FAMILIES if f != "babble")


@dataclass
class AugmentConfig:
    speed: list[float] = field(default_factory=list)  # e.g. [0.9, 1.0, 1.1]; [] = off
    noise_prob: float = 0.0  # share of utterances with additive noise
    noise_snr: list[float] = field(default_factory=lambda: [10.0, 30.0])  # dB, [lo, hi]
    noise_families: list[str] = field(default_factory=lambda: list(NOISE_FAMILIES))

    def __post_init__(self) -> None:
        if any(not 0.5 <= s <= 2.0 for s in self.speed):
            raise ValueError(f"augment.speed factors must be in [0.5, 2], found {self.speed}")
        if not 0.0 <= self.noise_prob <= 1.0:
            raise ValueError(f"augment.noise_prob must be in [0, 1], found {self.noise_prob}")
        if len(self.noise_snr) not in (1, 2):
            raise ValueError(f"augment.noise_snr is [lo, hi] in dB, found {self.noise_snr}")
        unknown = [f for f in self.noise_families if f not in NOISE_FAMILIES]
        if unknown or not self.noise_families:
            raise ValueError(
                f"augment.noise_families {self.noise_families}: choose from "
                f"{', '.join(NOISE_FAMILIES)}"
            )

    @property
    def active(self) -> bool:
        return any(s != 1.0 for s in self.speed) or self.noise_prob > 0


def change_speed(wav: torch.Tensor, factor: float) -> torch.Tensor:
    """``wav`` played ``factor`` times faster (``len / factor`` samples)."""
    if factor == 1.0:
        return wav
    import torchaudio.functional as AF

    ratio = Fraction(factor).limit_denominator(100)
    return AF.resample(wav, ratio.numerator, ratio.denominator)


def perturb(wav: torch.Tensor, cfg: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    """One utterance through ``cfg``'s speed change and additive noise."""
    if cfg.speed:
        wav = change_speed(wav, float(cfg.speed[int(rng.integers(len(cfg.speed)))]))
    if cfg.noise_prob > 0 and rng.random() < cfg.noise_prob and wav.numel() > 0:
        speech = wav.numpy()
        if np.any(speech):
            family = cfg.noise_families[int(rng.integers(len(cfg.noise_families)))]
            noise = partial(make_noise, family)
            wav = torch.from_numpy(add_at_random_snr(speech, noise, rng, cfg.noise_snr))
    return wav
