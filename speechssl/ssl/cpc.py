"""CPC (van den Oord et al. 2018, Contrastive Predictive Coding), in the *modified CPC* form of
Rivière et al. 2020 (``facebookresearch/CPC_audio``, the model s3prl loads as ``cpc``).

Waveform -> strided conv encoder -> z_t (10 ms frames) -> unidirectional LSTM -> c_t. For each
of K steps ahead (default 12) a head W_k predicts z_{t+k} from c_t, scored against N negatives
by the dot product, as the paper's f_k = exp(z_{t+k}ᵀ W_k c_t)::

    L = Σ_k Σ_{t + k < T} -log softmax_j (z_jᵀ W_k c_t)   over j ∈ {t + k} ∪ negatives(t)

The loss runs through :func:`speechssl.kernels.contrastive.contrastive_loss`
(``similarity="dot"``, temperature 1): for step k, row t of ``x`` holds W_k c_{t-k}, so the
positive of row t is z_t itself and the negatives are frame indices, exactly the wav2vec 2.0
layout; one call per step gives the per-step accuracy. The N negatives of a row are drawn once
and shared by the K steps (as CPC_audio), uniformly from:

- ``negatives: utterance`` — the other frames of the same utterance (the paper's Table 2 best,
  65.2% phone accuracy against 64.6% for minibatch negatives);
- ``negatives: speaker`` — the frames of every utterance of the same speaker in the batch
  (CPC_audio's ``samespeaker``, the modified-CPC default; needs ``utt2spk``);
- ``negatives: batch`` — any frame of the batch.

Encoder: five Conv1d (kernel/stride/padding 10/5/3, 8/4/2, 4/2/1 × 3; stride 160, so an
S-sample window gives S/160 frames), each followed by CPC_audio's ``ChannelNorm`` (per-frame
mean and unbiased variance over channels, then a per-channel scale and shift) and ReLU. Padded
frames are zeroed after every block, so a padded batch gives each utterance the frames it gets
alone (the convs' own zero padding and the batch's zero padding read the same). The LSTM is
unidirectional, so padding at the end never reaches a valid frame.

Deviations from CPC_audio, said plainly: the prediction heads are linear (the paper's W_k;
CPC_audio's checkpoint has a one-layer transformer per step, ``rnnMode transformer``); the loss is
a sum over steps normalised by the number of predictions (CPC_audio sums each step's mean, i.e.
K times larger: the same direction, a different lr scale); no 128-frame window bookkeeping
(``sizeWindow``) — every frame with a frame k steps ahead is a row. Its checkpoints do not load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from speechssl.kernels.contrastive import (
    contrastive_loss,
    sample_cross_negatives,
    sample_negatives,
)
from speechssl.nn.conv_encoder import layer_norm_waveform, length_mask
from speechssl.ssl import SSLMethod, export_backbone, get_method, register_method
from speechssl.ssl.masking import StepGenerators
from speechssl.train.protocol import ModelOutput

ConvSpec = tuple[int, int, int]  # (kernel, stride, padding)
CPC_CONV_LAYERS: list[ConvSpec] = [(10, 5, 3), (8, 4, 2), (4, 2, 1), (4, 2, 1), (4, 2, 1)]
CONTEXTS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU}
NEGATIVES = ("utterance", "speaker", "batch")


@dataclass
class CPCConfig:
    """Modified-CPC settings; defaults are CPC_audio's ``cpc_default_config.py`` (hiddenEncoder
    256, hiddenGar 256, nPredicts 12, negativeSamplingExt 128, arMode LSTM, samespeaker)."""

    encoder_dim: int = 256
    conv_layers: list[list[int]] = field(default_factory=lambda: [list(c) for c in CPC_CONV_LAYERS])
    context: str = "lstm"  # "lstm" (modified CPC) or "gru" (the paper)
    context_dim: int = 256
    context_layers: int = 1
    num_steps: int = 12  # prediction heads, one per step ahead
    num_negatives: int = 128
    negatives: str = "speaker"  # "utterance" | "speaker" | "batch"
    # zero-mean unit-variance waveform per utterance (wav2vec 2.0's ``normalize``). CPC_audio
    # feeds raw samples; at speech levels (~0.1) the first conv's bias then dominates every
    # frame, the channel norm maps all frames to nearly one vector, and a small model stays at
    # chance for hundreds of updates (on the synthetic corpus: 3.48 nats after 40, chance 3.50)
    normalize: bool = True
    seed: int = 0  # of the negative sampling generators

    def __post_init__(self) -> None:
        if self.context not in CONTEXTS:
            raise ValueError(f"context must be one of {sorted(CONTEXTS)}, not {self.context!r}")
        if self.negatives not in NEGATIVES:
            raise ValueError(f"negatives must be one of {list(NEGATIVES)}, not {self.negatives!r}")
        if self.num_steps < 1 or self.num_negatives < 1:
            raise ValueError(
                f"num_steps and num_negatives must be >= 1, found {self.num_steps}, "
                f"{self.num_negatives}"
            )
        if not self.conv_layers or any(len(c) != 3 for c in self.conv_layers):
            raise ValueError(
                f"conv_layers must be a list of [kernel, stride, padding], not {self.conv_layers}"
            )


PRESETS: dict[str, dict[str, Any]] = {
    "base": {},  # the modified CPC (CPC_audio / s3prl's cpc: 1.8M parameters with the heads)
    # CPU-sized: half the width and fewer negatives (chance 1/33); same steps and frame rate.
    "tiny": dict(encoder_dim=128, context_dim=128, num_negatives=32),
}


def cpc_config(preset: str = "base", **overrides: Any) -> CPCConfig:
    """A preset (``"tiny"``, ``"base"``) with field overrides."""
    return get_method("cpc").make_config(preset, **overrides)


class ChannelNorm(nn.Module):
    """CPC_audio's ``ChannelNorm``: each frame of ``(B, C, T)`` normalised over its channels
    (mean, unbiased variance), then a per-channel affine map."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = x.var(1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


def padded_conv_lengths(lengths: torch.Tensor, layers: list[list[int]]) -> torch.Tensor:
    """Valid output frames after padded convolutions: ``floor((L + 2p - k) / s) + 1`` per
    layer, clamped at 0."""
    out = lengths.long()
    for kernel, stride, padding in layers:
        out = (torch.div(out + 2 * padding - kernel, stride, rounding_mode="floor") + 1).clamp(
            min=0
        )
    return out


@dataclass
class CPCOutput:
    hidden_states: list[torch.Tensor]  # [z (B, T, encoder_dim), c (B, T, context_dim) per layer]
    lengths: torch.Tensor  # (B,) valid frames
    features: torch.Tensor  # z, the encoder output the predictions are scored against


class CPCModel(nn.Module):
    """Waveform -> conv encoder (z) -> unidirectional LSTM/GRU context (c): the backbone."""

    def __init__(self, cfg: CPCConfig):
        super().__init__()
        self.cfg = cfg
        convs, norms, in_dim = [], [], 1
        for kernel, stride, padding in cfg.conv_layers:
            convs.append(nn.Conv1d(in_dim, cfg.encoder_dim, kernel, stride, padding))
            norms.append(ChannelNorm(cfg.encoder_dim))
            in_dim = cfg.encoder_dim
        self.convs, self.norms = nn.ModuleList(convs), nn.ModuleList(norms)
        rnn = CONTEXTS[cfg.context]
        self.context = nn.ModuleList(
            rnn(cfg.encoder_dim if i == 0 else cfg.context_dim, cfg.context_dim, batch_first=True)
            for i in range(cfg.context_layers)
        )

    @property
    def stride(self) -> int:
        out = 1
        for _, s, _ in self.cfg.conv_layers:
            out *= s
        return out

    @property
    def num_layers(self) -> int:
        return self.cfg.context_layers

    @property
    def hidden_size(self) -> int:
        if self.cfg.encoder_dim != self.cfg.context_dim:
            raise ValueError("CPC's hidden states differ in width (encoder_dim != context_dim)")
        return self.cfg.context_dim

    def encode(
        self, wavs: torch.Tensor, wav_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, S)`` samples -> z ``(B, T, encoder_dim)`` (padded frames zero) and ``(B,)``."""
        if self.cfg.normalize:
            wavs = layer_norm_waveform(wavs, wav_lengths)
        x, lengths = wavs.unsqueeze(1), wav_lengths.long()
        for conv, norm, (kernel, stride, padding) in zip(
            self.convs, self.norms, self.cfg.conv_layers, strict=True
        ):
            lengths = padded_conv_lengths(lengths, [[kernel, stride, padding]])
            x = torch.relu(norm(conv(x)))
            x = x * length_mask(lengths, x.shape[2]).unsqueeze(1).to(x.dtype)
        return x.transpose(1, 2), lengths

    def forward(self, wavs: torch.Tensor, wav_lengths: torch.Tensor | None = None) -> CPCOutput:
        """wavs: ``(B, S)`` zero-padded; wav_lengths: ``(B,)`` samples (None: all of ``S``)."""
        if wav_lengths is None:
            wav_lengths = torch.full((wavs.shape[0],), wavs.shape[1], device=wavs.device)
        z, lengths = self.encode(wavs, wav_lengths)
        hidden, c = [z], z
        for rnn in self.context:
            c = rnn(c)[0]
            hidden.append(c)
        return CPCOutput(hidden, lengths, z)


class CPCPretraining(StepGenerators, nn.Module):
    """InfoNCE over K steps ahead: ``forward(batch) -> ModelOutput``; ``batch`` has ``wavs``,
    ``lengths`` and, for ``negatives: speaker``, ``speakers``."""

    def __init__(self, cfg: CPCConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = CPCModel(cfg)
        self.heads = nn.ModuleList(
            nn.Linear(cfg.context_dim, cfg.encoder_dim) for _ in range(cfg.num_steps)
        )

    def sample(
        self, lengths: torch.Tensor, max_len: int, generator: torch.Generator, speakers=None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(neg_idx, cross_neg_idx)`` for :func:`contrastive_loss`: in-utterance frame indices,
        or flat indices into the batch's frames (speaker / batch sampling)."""
        n, b = self.cfg.num_negatives, lengths.shape[0]
        if self.cfg.negatives == "utterance":
            return sample_negatives(lengths, max_len, n, generator), None
        groups = None
        if self.cfg.negatives == "speaker":
            if speakers is None:
                raise ValueError(
                    "CPC negatives: speaker needs each utterance's speaker (utt2spk in the data "
                    "dir); set model.negatives=utterance otherwise"
                )
            ids = {s: i for i, s in enumerate(dict.fromkeys(speakers))}
            groups = torch.tensor([ids[s] for s in speakers])
        none = torch.zeros(b, max_len, 0, dtype=torch.long)
        return none, sample_cross_negatives(lengths, max_len, n, generator, groups)

    def forward(self, batch: Any, generator: torch.Generator | None = None) -> ModelOutput:
        out = self.backbone(batch.wavs, batch.lengths)
        z, c, lengths = out.features, out.hidden_states[-1], out.lengths
        B, T, _ = z.shape
        gen = generator or self._generator(batch)
        neg, cross = self.sample(lengths.cpu(), T, gen, getattr(batch, "speakers", None))
        neg, lengths_dev = neg.to(z.device), lengths.to(z.device)
        cross = None if cross is None else cross.to(z.device)
        frames = torch.arange(T, device=z.device)
        key = frames[None, :] + T * torch.arange(B, device=z.device)[:, None]  # unique per frame
        loss, rows, stats = z.new_zeros(()), 0, {}
        for k, head in enumerate(self.heads, start=1):
            if k >= T:
                break
            pred = head(c[:, : T - k])  # c_t predicts z_{t+k}: row t + k of x
            x = torch.cat([pred.new_zeros(B, k, pred.shape[2]), pred], 1)
            valid = (frames[None, :] >= k) & (frames[None, :] < lengths_dev[:, None])
            res = contrastive_loss(
                x, z, neg, 1.0, valid=valid, cross_neg_idx=cross, dup_key=key, similarity="dot"
            )
            loss = loss + res.loss
            rows += int(res.num_rows)
            stats[f"acc_{k}"] = res.num_correct.float() / res.num_rows.clamp(min=1)
        return ModelOutput(loss=loss, sample_size=rows, stats=stats)

    def export_upstream(self) -> dict[str, Any]:
        """What an exported upstream file holds (see ``speechssl.upstream``)."""
        return export_backbone("cpc", self.cfg, self.backbone)


register_method(SSLMethod("cpc", CPCConfig, CPCPretraining, CPCModel, PRESETS))
