"""SpecAugment-style masking of a (B, T, D) representation (Park et al., 2019, without warping).

Applied to whatever the model consumes, fbank frames or an upstream's hidden states: time masks
zero spans of frames, feature masks zero spans of dimensions (channels, for SSL features). Mask
widths are drawn uniformly from ``[0, max]``; time-mask widths are capped by a fraction of each
utterance's own length so short utterances are not wiped out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SpecAugConfig:
    time_masks: int = 2  # time masks per utterance
    time_mask_frames: int = 20  # widest time mask, frames
    time_mask_max_ratio: float = 0.1  # ... and at most this fraction of the utterance per mask
    feature_masks: int = 2  # feature (channel) masks per utterance
    feature_mask_dims: int = 10  # widest feature mask, dimensions


def spec_augment(
    x: torch.Tensor, lengths: torch.Tensor, cfg: SpecAugConfig, generator: torch.Generator | None
) -> torch.Tensor:
    """``x`` (B, T, D) masked (a new tensor; masked entries are 0); ``lengths`` (B,) frames."""
    batch, frames, dims = x.shape
    keep = torch.ones(batch, frames, dims, dtype=torch.bool, device=x.device)
    t = torch.arange(frames, device=x.device)
    d = torch.arange(dims, device=x.device)

    def draw(high: torch.Tensor | float, n: int) -> torch.Tensor:
        u = torch.rand(batch, n, generator=generator).to(x.device)
        return (u * high).long()

    if cfg.time_masks > 0 and cfg.time_mask_frames > 0:
        cap = (lengths.float() * cfg.time_mask_max_ratio).clamp(max=cfg.time_mask_frames)
        width = draw(cap.unsqueeze(1) + 1, cfg.time_masks)
        start = draw((lengths.unsqueeze(1) - width).clamp(min=0).float() + 1, cfg.time_masks)
        inside = (t >= start.unsqueeze(-1)) & (t < (start + width).unsqueeze(-1))  # (B, n, T)
        keep &= ~inside.any(1).unsqueeze(-1)
    if cfg.feature_masks > 0 and cfg.feature_mask_dims > 0:
        width = draw(min(cfg.feature_mask_dims, dims) + 1, cfg.feature_masks)
        start = draw((dims - width).float() + 1, cfg.feature_masks)
        inside = (d >= start.unsqueeze(-1)) & (d < (start + width).unsqueeze(-1))  # (B, n, D)
        keep &= ~inside.any(1).unsqueeze(1)
    return x * keep.to(x.dtype)
