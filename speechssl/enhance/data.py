"""Training pairs for the enhancement regimes, built from a noisy data dir on the fly.

A data dir of the synthetic corpus's ``noisy/<split>`` has ``wav.scp`` (the noisy recording),
``noisy2.scp`` (a second recording of the same speech with independent noise; train only),
``clean.scp``, ``utt2snr`` and ``utt2noise``. What each regime reads and builds (``y`` is
``wav.scp``, ``y2`` is ``noisy2.scp``, ``s`` is ``clean.scp``, ``n`` is fresh simulated noise):

=============== ======================================== ==========================
regime          input -> target                          reads clean audio?
=============== ======================================== ==========================
noise2noise     ``y -> y2`` (either way round)           no (``pairs: simulate``:
                                                         ``s+n1 -> s+n2``)
noisy_as_clean  ``y + n -> y``                           no
sure            ``y -> y`` with the noise level sigma    no (sigma from ``utt2snr``
                (Gaussian noise; the white subset)       and the noisy power)
noise2self      ``y`` with T-F patches hidden -> ``y``   no
noise2clean     ``y -> s`` (``simulate``: ``s+n -> s``)  yes: the baseline
=============== ======================================== ==========================

``shared_noise: hum`` adds one realisation of that family to *both* sides of a Noise2Noise pair
(or to input and target alike): noise whose mean over the two copies is not zero, the case
Noise2Noise cannot remove. Every random choice (which copy is the input, crop offsets, noise,
SNR, SURE's probe, Noise2Self's patches) is drawn from the batch seed of the sampler, so a
resumed run sees the same pairs and every epoch sees new ones.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from speechssl.data.audio import SAMPLE_RATE, load_audio
from speechssl.data.dataset import AudioDataset
from speechssl.data.kaldi import DataDirError
from speechssl.data.synth.noise import scale_to_snr
from speechssl.enhance.simulate import SIMULATED_FAMILIES, NoiseBank, add_noise

REGIMES = ("noise2noise", "noisy_as_clean", "sure", "noise2self", "noise2clean")
PAIRS = ("corpus", "simulate")


@dataclass
class EnhanceDataConfig:
    crop_seconds: float = 2.0  # training segment (a batch is cut to its shortest utterance)
    pairs: str = "corpus"  # corpus: the data dir's recordings | simulate: fresh noise on clean.scp
    families: list[str] | None = None  # train on utterances whose utt2noise is one of these
    noise: list[str] = field(default_factory=lambda: list(SIMULATED_FAMILIES))  # simulated noise
    noise_dir: str | None = None  # a folder of noise recordings instead of the synthetic families
    snrs: list[float] = field(default_factory=lambda: [0.0, 5.0])  # simulated noise SNR range, dB
    shared_noise: str | None = None  # e.g. hum: one realisation added to input and target alike
    shared_snr: float = 5.0
    mask_prob: float = 0.02  # noise2self: share of T-F bins that centre a hidden patch
    mask_patch: list[int] = field(default_factory=lambda: [3, 7])  # noise2self: bins x frames


@dataclass
class EnhanceItem:
    utt_id: str
    input: np.ndarray
    target: np.ndarray
    sigma: float | None = None
    probe: np.ndarray | None = None  # sure: N(0, 1) per sample
    centres: np.ndarray | None = None  # noise2self: (F, T) bool


@dataclass
class EnhanceBatch:
    """wavs: ``(B, S)`` inputs; targets: ``(B, S)``; lengths ``(B,)``; sigmas ``(B,)`` (SURE's
    noise standard deviations) or None; probes ``(B, S)`` (SURE's Monte-Carlo vector) or None;
    centres ``(B, F, T)`` bool (Noise2Self's hidden patch centres) or None."""

    wavs: torch.Tensor
    targets: torch.Tensor
    lengths: torch.Tensor
    utt_ids: list[str]
    sigmas: torch.Tensor | None = None
    probes: torch.Tensor | None = None
    centres: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.utt_ids)

    def to(self, device, non_blocking: bool = False) -> EnhanceBatch:
        def move(t):
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return EnhanceBatch(
            move(self.wavs), move(self.targets), move(self.lengths), list(self.utt_ids),
            move(self.sigmas), move(self.probes), move(self.centres),
        )  # fmt: skip


def _pad(arrays: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(a) for a in arrays], dtype=torch.long)
    out = torch.zeros(len(arrays), int(lengths.max()))
    for b, a in enumerate(arrays):
        out[b, : len(a)] = torch.from_numpy(a)
    return out, lengths


def sigma_from_snr(noisy: np.ndarray, snr_db: float) -> float:
    """The noise standard deviation of ``noisy = speech + noise`` at ``snr_db`` (whole-utterance
    powers, independent noise): ``P_noise = P_noisy / (1 + 10^(snr/10))``. No clean audio needed."""
    power = float(np.mean(np.square(noisy, dtype=np.float64)))
    return float(np.sqrt(power / (1 + 10 ** (snr_db / 10))))


class EnhanceDataset(Dataset):
    """Utterances of a noisy data dir as (input, target) pairs of ``regime`` (see the module).

    ``crop``: cut each batch to ``crop_seconds`` (and to its shortest utterance) at random
    offsets; ``False`` keeps whole utterances (evaluation). ``stft``: ``(n_fft, hop)`` of the
    model, for Noise2Self's patch grid.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        regime: str,
        cfg: EnhanceDataConfig,
        crop: bool = True,
        stft: tuple[int, int] = (512, 128),
    ):
        if regime not in REGIMES:
            raise ValueError(f"regime {regime!r}: choose one of {', '.join(REGIMES)}")
        if cfg.pairs not in PAIRS:
            raise ValueError(f"data.pairs {cfg.pairs!r}: choose one of {', '.join(PAIRS)}")
        audio = AudioDataset(data_dir, crop=None)  # the data dir, and lengths without utt2dur too
        self.data = audio.data
        self.regime, self.cfg, self.crop, self.stft = regime, cfg, crop, stft
        self.sample_rate = SAMPLE_RATE
        needs = []
        if regime == "noise2noise" and cfg.pairs == "corpus":
            needs.append("noisy2.scp")
        if regime == "noise2clean" or cfg.pairs == "simulate":
            needs.append("clean.scp")
        if regime == "sure":
            needs.append("utt2snr")
        if cfg.families:
            needs.append("utt2noise")
        for name in needs:
            if name not in self.data.tables:
                raise DataDirError(
                    f"{self.data.path}: regime {regime} (pairs: {cfg.pairs}) needs '{name}'; "
                    f"{self._hint(name)}"
                )
        self.utt_ids = self._select()
        samples = dict(zip(audio.utt_ids, audio.num_samples, strict=True))
        self.num_samples = [samples[u] for u in self.utt_ids]
        self.bank = NoiseBank(cfg.noise, cfg.noise_dir)
        self.shared = NoiseBank((cfg.shared_noise,)) if cfg.shared_noise else None

    @staticmethod
    def _hint(name: str) -> str:
        return {
            "noisy2.scp": "Noise2Noise needs a second noisy recording of each utterance "
            "(the synthetic corpus's noisy/train has one), or use data.pairs=simulate",
            "clean.scp": "only Noise2Clean and data.pairs=simulate read clean audio",
            "utt2snr": "SURE needs each utterance's SNR to know its noise level",
        }.get(name, "utt2noise names each utterance's noise family")

    def _select(self) -> list[str]:
        utts = self.data.utt_ids
        if self.cfg.families:
            keep = set(self.cfg.families)
            tables = [self.data.tables["utt2noise"]]
            if self.regime == "noise2noise" and self.cfg.pairs == "corpus":
                tables.append(self.data.tables.get("utt2noise2", {}))
            utts = [u for u in utts if all(t.get(u) in keep for t in tables)]
            if not utts:
                raise DataDirError(
                    f"{self.data.path}: no utterance has noise in data.families "
                    f"{self.cfg.families} (see utt2noise)"
                )
        return utts

    @property
    def durations(self) -> list[float]:
        cap = self.cfg.crop_seconds if self.crop else None
        return [
            n / SAMPLE_RATE if cap is None else min(n / SAMPLE_RATE, cap) for n in self.num_samples
        ]

    def __len__(self) -> int:
        return len(self.utt_ids)

    def _read(self, table: str, utt: str) -> np.ndarray:
        if table == "wav.scp":
            return self.data.load_audio(utt, sample_rate=SAMPLE_RATE)
        entry = self.data.tables[table].get(utt)
        if entry is None:
            raise DataDirError(f"{self.data.path}/{table}: no entry for utterance '{utt}'")
        return load_audio(self.data.resolve(entry), SAMPLE_RATE, utt_id=utt)

    def _pair(self, utt: str, rng: np.random.Generator) -> EnhanceItem:
        cfg, regime = self.cfg, self.regime
        sigma = None
        if cfg.pairs == "simulate" and regime in ("noise2noise", "noise2clean"):
            clean = self._read("clean.scp", utt)
            first = add_noise(clean, self.bank, rng, cfg.snrs)
            second = (
                add_noise(clean, self.bank, rng, cfg.snrs) if regime == "noise2noise" else clean
            )
            pair = [first, second]
        elif regime == "noise2noise":
            pair = [self._read("wav.scp", utt), self._read("noisy2.scp", utt)]
            if rng.random() < 0.5:
                pair.reverse()
        elif regime == "noise2clean":
            pair = [self._read("wav.scp", utt), self._read("clean.scp", utt)]
        elif regime == "noisy_as_clean":
            noisy = self._read("wav.scp", utt)
            pair = [add_noise(noisy, self.bank, rng, cfg.snrs), noisy]
        else:  # sure, noise2self: the noisy recording is both
            noisy = self._read("wav.scp", utt)
            pair = [noisy, noisy]
            if regime == "sure":
                sigma = sigma_from_snr(noisy, float(self.data.tables["utt2snr"][utt]))
        n = min(len(pair[0]), len(pair[1]))  # recordings of one utterance may differ by a sample
        pair = [p[:n] for p in pair]
        if self.shared is not None:  # the same noise on both sides: not zero-mean across copies
            hum = scale_to_snr(pair[0], self.shared.sample(len(pair[0]), rng), cfg.shared_snr)
            pair = [p + hum[: len(p)] for p in pair]
        return EnhanceItem(utt, pair[0].astype(np.float32), pair[1].astype(np.float32), sigma)

    def __getitem__(self, index: int) -> EnhanceItem:
        return self._load([index], seed=index)[0]

    def __getitems__(self, indices: Sequence[int]) -> list[EnhanceItem]:
        return self._load(indices, getattr(indices, "seed", 0))

    def _load(self, indices: Sequence[int], seed: int) -> list[EnhanceItem]:
        items = [self._pair(self.utt_ids[i], np.random.default_rng([seed, i])) for i in indices]
        rng = np.random.default_rng([seed, *indices, 1])
        if self.crop:
            target = min(len(it.input) for it in items)
            target = min(target, round(self.cfg.crop_seconds * SAMPLE_RATE))
            for it in items:
                offset = int(rng.integers(0, len(it.input) - target + 1))
                it.input = it.input[offset : offset + target]
                it.target = it.target[offset : offset + target]
        n_fft, hop = self.stft
        for it in items:
            if self.regime == "sure":
                it.probe = rng.standard_normal(len(it.input)).astype(np.float32)
            if self.regime == "noise2self":
                shape = (n_fft // 2 + 1, 1 + len(it.input) // hop)
                it.centres = rng.random(shape) < self.cfg.mask_prob
        return items

    def collate(self, items: Sequence[EnhanceItem]) -> EnhanceBatch:
        wavs, lengths = _pad([it.input for it in items])
        targets, _ = _pad([it.target for it in items])
        batch = EnhanceBatch(wavs, targets, lengths, [it.utt_id for it in items])
        if self.regime == "sure":
            batch.sigmas = torch.tensor([it.sigma for it in items], dtype=torch.float32)
            batch.probes = _pad([it.probe for it in items])[0]
        if self.regime == "noise2self":
            frames = 1 + wavs.shape[1] // self.stft[1]
            centres = torch.zeros(len(items), self.stft[0] // 2 + 1, frames, dtype=torch.bool)
            for b, it in enumerate(items):
                centres[b, :, : it.centres.shape[1]] = torch.from_numpy(it.centres)
            batch.centres = centres
        return batch
