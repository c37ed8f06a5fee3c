"""What the masked-prediction methods (wav2vec 2.0, HuBERT, data2vec) share.

One backbone (:class:`~speechssl.ssl.wav2vec2.Wav2Vec2Model`), one way to mask it
(:meth:`MaskedPretraining.encode_masked`), and the presets' backbone sizes. Each method's
``forward`` is then its targets and its loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from speechssl.nn.conv_encoder import length_mask
from speechssl.ssl import export_backbone
from speechssl.ssl.masking import StepGenerators, compute_mask_indices

# CPU-sized backbone (0.76M parameters with 3 layers) of every tiny preset. Dropout is off and
# the feature penalty too: at this size even 0.1 drives the conv outputs to zero (dead GELUs)
# before the loss's gradient builds up, and dropout slows a few-hundred-update run (measured
# for HuBERT: masked-loss drop 19% -> 23%).
TINY_BACKBONE: dict[str, Any] = dict(
    conv_layers=[(64, 10, 5)] + [(64, 3, 2)] * 4 + [(64, 2, 2)] * 2,
    hidden_size=128,
    num_layers=3,
    num_heads=4,
    ffn_dim=512,
    pos_conv_kernel=32,
    pos_conv_groups=8,
    layerdrop=0.0,
    feature_grad_mult=1.0,
    mask_length=5,
    feature_penalty_weight=0.0,
    dropout=0.0,
    attention_dropout=0.0,
    input_dropout=0.0,
    feature_dropout=0.0,
)
# the LARGE (LibriVox) backbone of fairseq's wav2vec2 and HuBERT configs
LARGE_BACKBONE: dict[str, Any] = dict(
    extractor_mode="layer",
    conv_bias=True,
    normalize_waveform=True,
    feature_grad_mult=1.0,
    hidden_size=1024,
    num_layers=24,
    num_heads=16,
    ffn_dim=4096,
    layer_norm_first=True,
    dropout=0.0,
    attention_dropout=0.0,
    input_dropout=0.0,
    feature_dropout=0.0,
    layerdrop=0.0,
    final_dim=768,
)


class _GradMultiply(torch.autograd.Function):
    """Identity forward, gradient times ``scale`` backward (fairseq ``GradMultiply``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def features_penalty(feats: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean squared conv output over valid frames, fp32 (before the feature LayerNorm)."""
    sq = feats.float().pow(2).mean(-1)
    return (sq * valid).sum() / valid.sum().clamp(min=1)


@dataclass
class MaskedEncoding:
    """One masked pass through the backbone; ``(B, T, ...)`` unless said otherwise."""

    feats: torch.Tensor  # conv features, before the LayerNorm
    lengths: torch.Tensor  # (B,) valid frames
    valid: torch.Tensor  # (B, T) bool, not padding
    features_pen: torch.Tensor  # scalar, see features_penalty
    normed: torch.Tensor  # conv features after the LayerNorm (wav2vec 2.0 quantizes these)
    projected: torch.Tensor  # transformer width, before dropout and masking (data2vec's teacher)
    mask: torch.Tensor  # (B, T) bool, frames replaced by the mask embedding
    hidden: torch.Tensor  # last hidden state of the transformer over the masked input


class MaskedPretraining(StepGenerators, nn.Module):
    """The backbone (``self.backbone``, the part an exported upstream holds), per-step mask
    generators, conv features with the gradient scaled by ``feature_grad_mult``, and the
    masked pass. Subclasses set ``method`` and ``backbone_cls`` and define ``forward``."""

    method = "masked"
    backbone_cls: type[nn.Module]

    def __init__(self, cfg: Any):
        super().__init__()
        self.cfg = cfg
        self.backbone = self.backbone_cls(cfg)

    def conv_features(
        self, wavs: torch.Tensor, wav_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, C)`` conv features (before the LayerNorm) and ``(B,)`` valid frames."""
        mult = self.cfg.feature_grad_mult
        if mult <= 0:
            with torch.no_grad():
                return self.backbone.extract_features(wavs, wav_lengths)
        feats, lengths = self.backbone.extract_features(wavs, wav_lengths)
        if mult != 1.0 and feats.requires_grad:
            feats = _GradMultiply.apply(feats, mult)
        return feats, lengths

    def compute_mask(
        self, lengths: torch.Tensor, num_frames: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        cfg = self.cfg
        mask = compute_mask_indices(
            lengths.cpu(),
            num_frames,
            cfg.mask_prob,
            cfg.mask_length,
            generator if generator is not None else self._generator(),
            cfg.min_masks,
            cfg.require_same_masks,
            cfg.mask_dropout,
        )
        return mask.to(lengths.device)

    def compute_channel_mask(
        self, batch_size: int, generator: torch.Generator
    ) -> torch.Tensor | None:
        """``(B, D)`` channel spans to zero (fairseq ``mask_channel_*``: no minimum count, the
        same count in every row), or None when ``mask_channel_prob`` is 0."""
        cfg, dim = self.cfg, self.cfg.hidden_size
        if cfg.mask_channel_prob <= 0:
            return None
        return compute_mask_indices(
            [dim] * batch_size, dim, cfg.mask_channel_prob, cfg.mask_channel_length, generator, 0
        )

    def encode_masked(self, batch: Any, generator: torch.Generator | None = None) -> MaskedEncoding:
        """wavs -> conv features -> projection -> span mask -> transformer (paper §3.1 of
        each method); ``batch`` has ``wavs`` ``(B, S)`` and ``lengths`` ``(B,)``."""
        feats, lengths = self.conv_features(batch.wavs, batch.lengths)
        valid = length_mask(lengths, feats.shape[1])
        proj = self.backbone.feature_projection
        normed = proj.layer_norm(feats) if proj.layer_norm is not None else feats
        projected = proj.projection(normed)
        generator = generator if generator is not None else self._generator(batch)
        mask = self.compute_mask(lengths, feats.shape[1], generator).to(feats.device)
        channels = self.compute_channel_mask(feats.shape[0], generator)
        x = proj.dropout(projected)
        if channels is not None:
            channels = channels.to(feats.device)
        hidden = self.backbone.encode(x, lengths, mask, channel_mask=channels).last_hidden_state
        pen = features_penalty(feats, valid)
        return MaskedEncoding(feats, lengths, valid, pen, normed, projected, mask, hidden)

    def export_upstream(self) -> dict[str, Any]:
        """What an exported upstream file holds (see ``speechssl.upstream``)."""
        return export_backbone(self.method, self.cfg, self.backbone)
