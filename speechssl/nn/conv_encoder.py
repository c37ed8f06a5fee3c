"""The wav2vec 2.0 convolutional feature encoder (waveform -> ~50 Hz latent frames).

Each block is an unpadded ``Conv1d`` -> norm -> exact (erf) GELU (Baevski et al. 2020, §2).
Two norm layouts, as in fairseq's ``extractor_mode``:

- ``"group"`` ("default" in fairseq): a per-channel GroupNorm over time on the first block only,
  computed in fp32. Its statistics run over the *valid* frames of each utterance, so padding never
  leaks into the features (fairseq/HF include the padded frames; identical when nothing is padded).
- ``"layer"``: a LayerNorm over channels in every block (fp32), which is padding-free by nature.

Frame ``t`` of a block reads samples ``[t*s, t*s + k)``, so the first ``floor((L - k) / s) + 1``
outputs depend on valid samples only; those are the valid output frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

ConvLayerSpec = tuple[int, int, int]  # (channels, kernel, stride)

WAV2VEC2_CONV_LAYERS: list[ConvLayerSpec] = [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2


def conv_output_lengths(
    lengths: torch.Tensor, conv_layers: Sequence[ConvLayerSpec]
) -> torch.Tensor:
    """Valid output frames for ``lengths`` input samples: ``floor((L - k) / s) + 1`` per layer,
    clamped at 0 for inputs shorter than the receptive field."""
    out = lengths.long()
    for _, kernel, stride in conv_layers:
        out = torch.div(out - kernel, stride, rounding_mode="floor") + 1
        out = out.clamp(min=0)
    return out


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(B,)`` lengths -> ``(B, max_len)`` bool, True on valid positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def layer_norm_waveform(
    wavs: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """Zero-mean unit-variance waveforms over their valid samples (fairseq ``normalize: true``:
    ``F.layer_norm(wav, wav.shape)``, eps 1e-5); padding stays zero. ``(B, S) -> (B, S)``."""
    valid = length_mask(lengths, wavs.shape[1]).to(wavs.dtype)
    count = valid.sum(1, keepdim=True).clamp(min=1)
    mean = (wavs * valid).sum(1, keepdim=True) / count
    var = ((wavs - mean) ** 2 * valid).sum(1, keepdim=True) / count
    return (wavs - mean) / torch.sqrt(var + eps) * valid


class MaskedGroupNorm(nn.Module):
    """GroupNorm with one group per channel (mean/var over time), statistics over valid frames
    only, in fp32. Same parameters (``weight``, ``bias``) as ``nn.GroupNorm(C, C)``."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x: ``(B, C, T)``; lengths: ``(B,)`` valid frames. Padded frames come out as zeros
        (no valid frame of a later block reads them)."""
        xf, channels = x.float(), x.shape[1]
        weight, bias = self.weight.float(), self.bias.float()
        if bool((lengths >= x.shape[2]).all()):  # unpadded: one native group_norm call
            return F.group_norm(xf, channels, weight, bias, self.eps).to(x.dtype)
        # padded: the native op on each row's valid frames (elementwise masked statistics over
        # (B, 512, T) cost ~3x more on a CPU, bench/upstream_forward.py)
        y = torch.zeros_like(xf)
        for row, frames in enumerate(lengths.tolist()):
            if frames > 0:
                y[row, :, :frames] = F.group_norm(
                    xf[row : row + 1, :, :frames], channels, weight, bias, self.eps
                )[0]
        return y.to(x.dtype)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a ``(B, C, T)`` tensor, in fp32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(
            x.transpose(1, 2).float(),
            self.normalized_shape,
            self.weight.float() if self.weight is not None else None,
            self.bias.float() if self.bias is not None else None,
            self.eps,
        )
        return y.transpose(1, 2).to(x.dtype)


class _ConvBlock(nn.Module):
    def __init__(self, in_dim: int, spec: ConvLayerSpec, norm: str | None, bias: bool):
        super().__init__()
        dim, kernel, stride = spec
        self.conv = nn.Conv1d(in_dim, dim, kernel, stride=stride, bias=bias)
        nn.init.kaiming_normal_(self.conv.weight)
        self.norm: nn.Module | None
        if norm == "group":
            self.norm = MaskedGroupNorm(dim)
        elif norm == "layer":
            self.norm = ChannelLayerNorm(dim)
        else:
            self.norm = None

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if isinstance(self.norm, MaskedGroupNorm):
            x = self.norm(x, lengths)
        elif self.norm is not None:
            x = self.norm(x)
        return F.gelu(x)


class ConvFeatureEncoder(nn.Module):
    """Stack of strided 1-D convolutions over the raw waveform.

    Args:
        conv_layers: ``[(channels, kernel, stride), ...]``; wav2vec 2.0 uses
            :data:`WAV2VEC2_CONV_LAYERS` (stride 320 = 20 ms at 16 kHz, receptive field 400).
        mode: ``"group"`` (GroupNorm on block 0 only) or ``"layer"`` (LayerNorm in every block).
        conv_bias: whether the convolutions have a bias (fairseq BASE: no; LARGE: yes).
    """

    def __init__(
        self,
        conv_layers: Sequence[ConvLayerSpec] = WAV2VEC2_CONV_LAYERS,
        mode: str = "group",
        conv_bias: bool = False,
    ):
        super().__init__()
        if mode not in ("group", "layer"):
            raise ValueError(f"conv feature encoder mode must be 'group' or 'layer', not {mode!r}")
        self.conv_layers_spec = [tuple(int(v) for v in spec) for spec in conv_layers]
        self.mode = mode
        blocks = []
        in_dim = 1
        for i, spec in enumerate(self.conv_layers_spec):
            norm = "layer" if mode == "layer" else ("group" if i == 0 else None)
            blocks.append(_ConvBlock(in_dim, spec, norm, conv_bias))
            in_dim = spec[0]
        self.conv_layers = nn.ModuleList(blocks)
        self.output_dim = in_dim

    @property
    def stride(self) -> int:
        """Input samples per output frame."""
        out = 1
        for _, _, s in self.conv_layers_spec:
            out *= s
        return out

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return conv_output_lengths(lengths, self.conv_layers_spec)

    def forward(
        self, wavs: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """wavs: ``(B, S)`` zero-padded samples; lengths: ``(B,)`` valid samples (None: all).
        Returns ``(B, T, C)`` features (padded frames zeroed) and ``(B,)`` valid frames."""
        if lengths is None:
            lengths = torch.full((wavs.shape[0],), wavs.shape[1], device=wavs.device)
        x = wavs.unsqueeze(1)
        frame_lengths = lengths.long()
        for block, (_, kernel, stride) in zip(self.conv_layers, self.conv_layers_spec):
            frame_lengths = (
                torch.div(frame_lengths - kernel, stride, rounding_mode="floor") + 1
            ).clamp(min=0)
            x = block(x, frame_lengths)
        x = x.transpose(1, 2)
        valid = length_mask(frame_lengths, x.shape[1])
        if not bool(valid.all()):
            x = x * valid.unsqueeze(-1).to(x.dtype)
        return x, frame_lengths


class FeatureProjection(nn.Module):
    """LayerNorm of the conv features, then Linear to the transformer width and dropout.

    ``forward`` returns ``(projected, normed)``: wav2vec 2.0 quantizes the normed features
    (its "unmasked features"), HuBERT/data2vec ignore them.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        dropout: float = 0.0,
        layer_norm: bool = True,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.layer_norm = nn.LayerNorm(in_dim, eps=eps) if layer_norm else None
        self.projection = nn.Linear(in_dim, out_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        normed = self.layer_norm(x) if self.layer_norm is not None else x
        return self.dropout(self.projection(normed)), normed
