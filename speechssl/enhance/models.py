"""Enhancement networks: waveform in, waveform out, at 16 kHz.

- ``mask`` (:class:`MaskNet`): a T-F mask on the noisy STFT magnitude, resynthesised with the
  noisy phase. Input features are the log power spectrum with the utterance's mean log power
  removed (so the mask does not depend on the recording level); Linear -> BLSTM -> Linear ->
  sigmoid gives a mask in [0, 1] per bin; output ``iSTFT(M * Y)`` trimmed to the input length.
- ``wave`` (:class:`WaveUNet`): a small Demucs-like U-Net on the waveform (Défossez et al.,
  2020): strided conv encoder (Conv1d K/S -> ReLU -> 1x1 Conv -> GLU per layer, channels doubling),
  a BLSTM at the bottleneck, a mirrored transposed-conv decoder with additive skips; the input
  is divided by its standard deviation and the output multiplied back, as Demucs does.

Both take ``(wavs (B, S), lengths (B,))`` and return ``(B, S)``; samples past a length are 0.
``stft``/``istft`` are the STFT the mask model, the losses and Noise2Self's blind spots share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from speechssl.nn.conv_encoder import length_mask
from speechssl.nn.rnn import BiLSTM

MODEL_KINDS = ("mask", "wave")


@dataclass
class EnhanceModelConfig:
    kind: str = "mask"  # mask (T-F mask, noisy phase) | wave (Demucs-like waveform U-Net)
    n_fft: int = 512  # STFT of the mask model (and of the STFT losses / Noise2Self's masks)
    hop: int = 128
    hidden_size: int = 128  # BLSTM units per direction (both kinds)
    num_layers: int = 2  # BLSTM layers (both kinds)
    dropout: float = 0.0
    channels: int = 16  # wave: channels of the first encoder layer, doubled per layer
    depth: int = 4  # wave: encoder (and decoder) layers
    kernel_size: int = 8  # wave
    stride: int = 4  # wave


def stft(wavs: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """``(B, S)`` -> complex ``(B, F, T)``, Hann window, centred frames."""
    window = torch.hann_window(n_fft, device=wavs.device, dtype=wavs.dtype)
    return torch.stft(wavs, n_fft, hop, window=window, center=True, return_complex=True)


def istft(spec: torch.Tensor, n_fft: int, hop: int, length: int) -> torch.Tensor:
    window = torch.hann_window(n_fft, device=spec.device, dtype=spec.real.dtype)
    return torch.istft(spec, n_fft, hop, window=window, center=True, length=length)


def stft_frames(lengths: torch.Tensor, hop: int) -> torch.Tensor:
    """Frames ``stft`` gives for each length (centred: ``1 + n // hop``)."""
    return 1 + torch.div(lengths, hop, rounding_mode="floor")


class MaskNet(nn.Module):
    def __init__(self, cfg: EnhanceModelConfig):
        super().__init__()
        self.cfg = cfg
        bins = cfg.n_fft // 2 + 1
        self.proj = nn.Linear(bins, cfg.hidden_size)
        self.rnn = BiLSTM(cfg.hidden_size, cfg.hidden_size, cfg.num_layers, cfg.dropout)
        self.out = nn.Linear(2 * cfg.hidden_size, bins)

    def mask(self, spec: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Mask ``(B, F, T)`` in [0, 1] for the noisy spectrum ``spec``."""
        valid = length_mask(frames, spec.shape[-1]).unsqueeze(1).to(spec.real.dtype)  # (B,1,T)
        logpow = torch.log(spec.abs().square() + 1e-10)
        mean = (logpow * valid).sum((1, 2), keepdim=True) / (
            valid.sum((1, 2), keepdim=True) * logpow.shape[1]
        )
        x = ((logpow - mean) * valid).transpose(1, 2)  # (B, T, F)
        h = self.rnn(torch.relu(self.proj(x)), frames)
        return torch.sigmoid(self.out(h)).transpose(1, 2)

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        spec = stft(wavs, cfg.n_fft, cfg.hop)
        frames = stft_frames(lengths, cfg.hop).clamp(max=spec.shape[-1])
        out = istft(self.mask(spec, frames) * spec, cfg.n_fft, cfg.hop, wavs.shape[-1])
        return out * length_mask(lengths, wavs.shape[-1]).to(out.dtype)


class WaveUNet(nn.Module):
    def __init__(self, cfg: EnhanceModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder, self.decoder = nn.ModuleList(), nn.ModuleList()
        ch_in, ch = 1, cfg.channels
        for layer in range(cfg.depth):
            self.encoder.append(
                nn.Sequential(
                    nn.Conv1d(ch_in, ch, cfg.kernel_size, cfg.stride),
                    nn.ReLU(),
                    nn.Conv1d(ch, 2 * ch, 1),
                    nn.GLU(dim=1),
                )
            )
            decode = [
                nn.Conv1d(ch, 2 * ch, 1),
                nn.GLU(dim=1),
                nn.ConvTranspose1d(ch, ch_in, cfg.kernel_size, cfg.stride),
            ]
            if layer > 0:
                decode.append(nn.ReLU())
            self.decoder.insert(0, nn.Sequential(*decode))
            ch_in, ch = ch, 2 * ch
        self.rnn = BiLSTM(ch_in, cfg.hidden_size, cfg.num_layers, cfg.dropout)
        self.rnn_out = nn.Linear(2 * cfg.hidden_size, ch_in)

    def valid_length(self, n: int) -> int:
        """The smallest input length >= n that the encoder and decoder map to itself."""
        k, s = self.cfg.kernel_size, self.cfg.stride
        for _ in range(self.cfg.depth):
            n = max(math.ceil((n - k) / s) + 1, 1)
        for _ in range(self.cfg.depth):
            n = (n - 1) * s + k
        return n

    def _frames(self, lengths: torch.Tensor) -> torch.Tensor:
        k, s = self.cfg.kernel_size, self.cfg.stride
        for _ in range(self.cfg.depth):
            lengths = (torch.div(lengths - k, s, rounding_mode="floor") + 1).clamp(min=1)
        return lengths

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        valid = length_mask(lengths, wavs.shape[-1]).to(wavs.dtype)
        count = valid.sum(-1, keepdim=True).clamp(min=1)
        mean = (wavs * valid).sum(-1, keepdim=True) / count
        std = (((wavs - mean) * valid).square().sum(-1, keepdim=True) / count).sqrt() + 1e-5
        x = F.pad(
            (wavs * valid / std).unsqueeze(1),
            (0, self.valid_length(wavs.shape[-1]) - wavs.shape[-1]),
        )
        skips = []
        for layer in self.encoder:
            x = layer(x)
            skips.append(x)
        frames = self._frames(lengths).clamp(max=x.shape[-1])
        x = self.rnn_out(self.rnn(x.transpose(1, 2), frames)).transpose(1, 2)
        for layer in self.decoder:
            skip = skips.pop()
            x = layer(x + skip[..., : x.shape[-1]])
        return x[:, 0, : wavs.shape[-1]] * std * valid


def build_model(cfg: EnhanceModelConfig) -> nn.Module:
    if cfg.kind == "mask":
        return MaskNet(cfg)
    if cfg.kind == "wave":
        return WaveUNet(cfg)
    raise ValueError(f"model.kind {cfg.kind!r}: choose one of {', '.join(MODEL_KINDS)}")
