"""A log-Mel front end for the masked-prediction backbones, in place of the waveform CNN.

80-d Kaldi fbank (25 ms windows every 10 ms, per-utterance mean/variance normalisation), with
``stack`` consecutive frames concatenated into one: ``stack = 2`` gives 160-d frames every
20 ms, the rate of wav2vec 2.0's CNN, so masking, HuBERT's label rate and every stride
computation stay as they are (the MelHuBERT idea, Lin et al., ASRU 2023). The feature
projection of the backbone (LayerNorm + Linear) then maps the stacked frames to the
transformer width. The front end has no parameters: the fbank is computed without gradient,
on the CPU, one utterance at a time (:func:`speechssl.features.extract.batch_features`).
"""

from __future__ import annotations

import torch
from torch import nn

from speechssl.features.extract import FeatureConfig, batch_features


class FbankFrontend(nn.Module):
    """``(B, S)`` samples -> ``(B, T, stack * num_mel_bins)`` stacked fbank and ``(B,)``
    frames; the same ``forward``/``output_lengths``/``stride``/``output_dim`` as
    :class:`~speechssl.nn.conv_encoder.ConvFeatureEncoder`."""

    def __init__(self, num_mel_bins: int = 80, stack: int = 2, utterance_cmvn: bool = True):
        super().__init__()
        if stack < 1:
            raise ValueError(f"fbank frame stack must be >= 1, not {stack}")
        self.feature_config = FeatureConfig(kind="fbank", num_mel_bins=num_mel_bins)
        self.stack = stack
        self.utterance_cmvn = utterance_cmvn
        self.output_dim = num_mel_bins * stack

    @property
    def stride(self) -> int:
        """Input samples per output frame (320 for 10 ms frames stacked by 2)."""
        return self.feature_config.frame_shift_samples * self.stack

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames for ``lengths`` samples: Kaldi's ``1 + (L - window) // shift`` fbank
        frames (0 below one window), whole stacks only."""
        window = int(self.feature_config.sample_rate * self.feature_config.frame_length_ms / 1000)
        shift = self.feature_config.frame_shift_samples
        frames = torch.div(lengths.long() - window, shift, rounding_mode="floor") + 1
        return torch.div(frames.clamp(min=0), self.stack, rounding_mode="floor")

    def forward(
        self, wavs: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """wavs: ``(B, S)`` zero-padded; lengths: ``(B,)`` valid samples (None: all).
        Returns ``(B, T, stack * num_mel_bins)`` (padded frames zero) and ``(B,)`` frames."""
        if lengths is None:
            lengths = torch.full((wavs.shape[0],), wavs.shape[1], device=wavs.device)
        feats, frames = batch_features(wavs, lengths, self.feature_config, self.utterance_cmvn)
        b, n, d = feats.shape
        t = n // self.stack
        out = feats[:, : t * self.stack].reshape(b, t, self.stack * d)
        out_lengths = torch.div(frames, self.stack, rounding_mode="floor")
        # a last, incomplete stack of an utterance is dropped: zero its frame
        valid = torch.arange(t, device=out.device)[None, :] < out_lengths[:, None]
        return out * valid.unsqueeze(-1).to(out.dtype), out_lengths
