"""Cepstral mean and variance normalisation, global or per speaker.

Statistics use Kaldi's layout, a ``(2, D + 1)`` matrix: row 0 holds the feature sums and the
frame count in the last column, row 1 the sums of squares; so they interoperate with Kaldi's
``compute-cmvn-stats`` / ``apply-cmvn``.
"""

from __future__ import annotations

import numpy as np
import torch

VAR_FLOOR = 1e-10


def accumulate(feats: np.ndarray | torch.Tensor, stats: np.ndarray | None = None) -> np.ndarray:
    """Add ``(T, D)`` features to ``(2, D + 1)`` float64 statistics (new ones if None)."""
    x = np.asarray(feats, dtype=np.float64)
    if stats is None:
        stats = np.zeros((2, x.shape[1] + 1), dtype=np.float64)
    if stats.shape[1] != x.shape[1] + 1:
        raise ValueError(f"CMVN stats have dim {stats.shape[1] - 1}, features {x.shape[1]}")
    stats[0, :-1] += x.sum(axis=0)
    stats[0, -1] += x.shape[0]
    stats[1, :-1] += (x * x).sum(axis=0)
    return stats


def mean_std(stats: np.ndarray, norm_vars: bool = True) -> tuple[np.ndarray, np.ndarray]:
    count = stats[0, -1]
    if count <= 0:
        raise ValueError("CMVN stats hold no frames")
    mean = stats[0, :-1] / count
    if not norm_vars:
        return mean, np.ones_like(mean)
    var = np.maximum(stats[1, :-1] / count - mean * mean, VAR_FLOOR)
    return mean, np.sqrt(var)


def apply(feats: np.ndarray | torch.Tensor, stats: np.ndarray, norm_vars: bool = True):
    """Normalise ``(T, D)`` features; returns the same array type as given."""
    mean, std = mean_std(stats, norm_vars)
    if isinstance(feats, torch.Tensor):
        return (feats - torch.as_tensor(mean, dtype=feats.dtype)) / torch.as_tensor(
            std, dtype=feats.dtype
        )
    return ((feats - mean) / std).astype(np.float32)
