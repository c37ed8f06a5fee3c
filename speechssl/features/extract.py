"""Kaldi-compatible filterbank and MFCC features through ``torchaudio.compliance.kaldi``.

Waveforms in [-1, 1] are scaled to the 16-bit integer range first, as Kaldi's
``compute-fbank-feats`` sees them, so stored features are comparable with Kaldi's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio.compliance.kaldi as ta_kaldi
import torchaudio.functional as ta_f
from torch import nn

INT16_SCALE = 32768.0


@dataclass(frozen=True)
class FeatureConfig:
    kind: str = "fbank"  # "fbank" (log mel energies) or "mfcc"
    num_mel_bins: int = 80  # fbank dims; MFCC's mel bank size is 23 (Kaldi default)
    num_ceps: int = 13  # MFCC only
    deltas: bool = False  # append delta and delta-delta (13 -> 39 for MFCC)
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    sample_rate: int = 16000
    # Kaldi dithers by default (1.0); 0 keeps features deterministic so reruns are byte-identical.
    dither: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("fbank", "mfcc"):
            raise ValueError(f"feature kind must be 'fbank' or 'mfcc', not {self.kind!r}")

    @property
    def dim(self) -> int:
        base = self.num_mel_bins if self.kind == "fbank" else self.num_ceps
        return base * 3 if self.deltas else base

    @property
    def frame_shift_samples(self) -> int:
        return int(self.sample_rate * self.frame_shift_ms / 1000)

    def num_frames(self, num_samples: int) -> int:
        """Frames Kaldi produces with snip_edges=True."""
        window = int(self.sample_rate * self.frame_length_ms / 1000)
        return 0 if num_samples < window else 1 + (num_samples - window) // self.frame_shift_samples


class _KaldiFbank:
    """Kaldi fbank (torchaudio's defaults: povey window, pre-emphasis 0.97, DC removal, power
    spectrum, 20 Hz to Nyquist, snip_edges) with the mel bank and window built once per config.

    torchaudio.compliance.kaldi.fbank rebuilds both on every call, about half its time on
    few-second utterances; the arithmetic here is the same, so outputs agree to float rounding.
    """

    def __init__(self, cfg: FeatureConfig):
        self.size = int(cfg.sample_rate * cfg.frame_length_ms / 1000)
        self.shift = cfg.frame_shift_samples
        self.padded = 1 << (self.size - 1).bit_length()
        banks, _ = ta_kaldi.get_mel_banks(
            cfg.num_mel_bins, self.padded, float(cfg.sample_rate), 20.0, 0.0, 100.0, -500.0, 1.0
        )
        self.banks_t = torch.nn.functional.pad(banks.float(), (0, 1)).T.contiguous()
        self.window = torch.hann_window(self.size, periodic=False).pow(0.85)
        self.eps = torch.tensor(torch.finfo(torch.float).eps)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``(num_samples,)`` int16-scaled samples -> ``(num_frames, num_mel_bins)``."""
        if x.numel() < self.size:
            return torch.empty(0, self.banks_t.shape[1])
        n = 1 + (x.numel() - self.size) // self.shift
        frames = x.as_strided((n, self.size), (self.shift, 1))
        frames = frames - frames.mean(dim=1, keepdim=True)
        prev = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
        frames = (frames - 0.97 * prev) * self.window
        spectrum = torch.fft.rfft(frames, n=self.padded).abs().pow(2.0)
        return torch.max(spectrum @ self.banks_t, self.eps).log()


@functools.lru_cache(maxsize=8)
def _fbank_for(cfg: FeatureConfig) -> _KaldiFbank:
    return _KaldiFbank(cfg)


def compute_features(wav: np.ndarray | torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """Features of one waveform.

    Args:
        wav: ``(num_samples,)`` float samples in [-1, 1] at ``cfg.sample_rate``.
    Returns:
        ``(num_frames, cfg.dim)`` float32 tensor.
    """
    x = torch.as_tensor(wav, dtype=torch.float32).reshape(1, -1) * INT16_SCALE
    common = dict(
        frame_length=cfg.frame_length_ms,
        frame_shift=cfg.frame_shift_ms,
        dither=cfg.dither,
        sample_frequency=float(cfg.sample_rate),
    )
    if cfg.kind == "fbank" and cfg.dither == 0.0:
        feats = _fbank_for(cfg)(x[0])
    elif cfg.kind == "fbank":
        feats = ta_kaldi.fbank(x, num_mel_bins=cfg.num_mel_bins, **common)
    else:
        feats = ta_kaldi.mfcc(x, num_ceps=cfg.num_ceps, **common)
    if cfg.deltas:
        # compute_deltas works along the last axis: (D, T)
        d1 = ta_f.compute_deltas(feats.T.unsqueeze(0)).squeeze(0).T
        d2 = ta_f.compute_deltas(d1.T.unsqueeze(0)).squeeze(0).T
        feats = torch.cat([feats, d1, d2], dim=1)
    return feats


class FeatureExtractor(nn.Module):
    """On-the-fly features for training: ``(wavs, lengths) -> (feats, frame_lengths)``.

    Optionally normalised with global CMVN statistics (mean and std per dimension).
    """

    def __init__(
        self, cfg: FeatureConfig, mean: torch.Tensor | None = None, std: torch.Tensor | None = None
    ):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mean", mean if mean is not None else torch.zeros(cfg.dim))
        self.register_buffer("std", std if std is not None else torch.ones(cfg.dim))

    @torch.no_grad()
    def forward(
        self, wavs: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """wavs: ``(B, S)`` padded samples; lengths: ``(B,)`` samples. Returns ``(B, T, D)``
        padded with zeros and ``(B,)`` frame counts."""
        feats = [
            compute_features(w[: int(n)].float().cpu(), self.cfg)
            for w, n in zip(wavs, lengths, strict=True)
        ]
        frame_lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
        longest = int(frame_lengths.max()) if feats else 0
        out = torch.zeros(len(feats), longest, self.cfg.dim)
        for i, f in enumerate(feats):
            out[i, : f.shape[0]] = (f - self.mean.cpu()) / self.std.cpu()
        return out.to(wavs.device), frame_lengths.to(wavs.device)


def batch_features(
    wavs: torch.Tensor, wav_lengths: torch.Tensor, cfg: FeatureConfig, utterance_cmvn: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, S)`` zero-padded samples -> ``(B, T, D)`` features of each utterance's valid
    samples (zero-padded) and ``(B,)`` frames, on ``wavs``' device. Computed on the CPU one
    utterance at a time; with ``utterance_cmvn`` each utterance is normalised to zero mean and
    unit variance per dimension (std floored at 1e-5)."""
    feats = []
    for wav, n in zip(wavs, wav_lengths.tolist(), strict=True):
        f = compute_features(wav[: int(n)].float().cpu(), cfg)
        if utterance_cmvn and f.shape[0] > 0:
            f = (f - f.mean(0)) / f.std(0, unbiased=False).clamp(min=1e-5)
        feats.append(f)
    lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
    out = torch.zeros(len(feats), int(lengths.max()), feats[0].shape[1])
    for i, f in enumerate(feats):
        out[i, : f.shape[0]] = f
    return out.to(wavs.device), lengths.to(wavs.device)
