"""APC (Chung et al. 2019, Autoregressive Predictive Coding): a unidirectional RNN stack that
predicts the log-Mel frame ``n_future`` steps ahead.

With x_t the utterance-normalised 80-d fbank frame, h_t the last RNN layer and P the
``postnet`` (s3prl ``pretrain/apc``, ``upstream/apc/apc.py``)::

    L = Σ_{t + n < T} mean_d | P(h_t) - x_{t+n} |_d        (n = ``n_future``)

summed over every utterance's valid frames, ``ModelOutput.sample_size`` = how many frames are
predicted; so loss / sample_size is s3prl's ``L1Loss`` (a mean over frames and dims) without
the padding. Each layer's output gets dropout, and from the second layer on its input added
(s3prl's ``rnn_residual``). Frame t of every hidden state depends on frames 0..t only: the RNNs
are unidirectional and the padding, at the end, never reaches a valid frame, so the padded
tensor runs as is (no packing, which is slow on CPU, see :mod:`speechssl.nn.rnn`). The
utterance-level mean/variance normalisation (as :class:`speechssl.upstream.FbankUpstream`)
is the one step that sees the whole utterance; ``utterance_cmvn=False`` makes the backbone
causal from the waveform on.

Unlike s3prl and the official code (no prenet), a linear ``input_projection`` (80 -> hidden)
feeds the first RNN: its output is hidden state 0, so every hidden state has the same width for
SUPERB's weighted sum. A linear map before a GRU/LSTM folds into the RNN's input weights, so
the model computes the same family of functions, with 0.7M more parameters at base (4.81M with
the postnet; s3prl 4.11M): an s3prl checkpoint would load exactly with the projection an
identity padded with zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from speechssl.features.extract import FeatureConfig, batch_features
from speechssl.nn.conv_encoder import length_mask
from speechssl.ssl import SSLMethod, export_backbone, get_method, register_method
from speechssl.train.protocol import ModelOutput

RNNS: dict[str, type[nn.RNNBase]] = {"gru": nn.GRU, "lstm": nn.LSTM}


@dataclass
class APCConfig:
    """APC settings; defaults are s3prl's ``pretrain/apc/config_model.yaml`` except
    ``n_future`` (s3prl 5, the official code 1)."""

    rnn: str = "gru"  # "gru" (s3prl) or "lstm" (the official APC code)
    hidden_size: int = 512
    num_layers: int = 3
    dropout: float = 0.1  # on every RNN layer's output
    residual: bool = True  # add each layer's input to its output, from the second layer on
    n_future: int = 3  # predict the frame this many steps ahead
    num_mel_bins: int = 80  # Kaldi fbank, 25 ms windows every 10 ms
    utterance_cmvn: bool = True  # per-utterance mean/variance normalisation of the fbank

    def __post_init__(self) -> None:
        if self.rnn not in RNNS:
            raise ValueError(f"rnn must be one of {sorted(RNNS)}, not {self.rnn!r}")
        if self.n_future < 1 or self.num_layers < 1 or self.hidden_size < 1:
            raise ValueError(
                f"n_future, num_layers and hidden_size must be >= 1, found {self.n_future}, "
                f"{self.num_layers}, {self.hidden_size}"
            )


PRESETS: dict[str, dict[str, Any]] = {
    "base": {},  # 3 x GRU 512, as s3prl's apc_360hr / apc_960hr
    # CPU-sized: pretrains on the test-scale synthetic corpus in ~2 minutes on one thread.
    # Dropout off, as every tiny preset: a few hundred updates do not overfit.
    "tiny": dict(hidden_size=128, dropout=0.0),
}


def apc_config(preset: str = "base", **overrides: Any) -> APCConfig:
    """A preset (``"tiny"``, ``"base"``) with field overrides."""
    return get_method("apc").make_config(preset, **overrides)


@dataclass
class APCOutput:
    hidden_states: list[torch.Tensor]  # (B, T, H) each: input projection, then each RNN layer
    lengths: torch.Tensor  # (B,) valid frames; frames past them are not meaningful
    features: torch.Tensor  # (B, T, num_mel_bins) the fbank the RNNs read, zero-padded


class APCModel(nn.Module):
    """Waveform -> fbank -> input projection -> unidirectional RNN stack (the backbone)."""

    def __init__(self, cfg: APCConfig):
        super().__init__()
        self.cfg = cfg
        self.feature_config = FeatureConfig(kind="fbank", num_mel_bins=cfg.num_mel_bins)
        self.input_projection = nn.Linear(cfg.num_mel_bins, cfg.hidden_size)
        rnn = RNNS[cfg.rnn]
        self.rnns = nn.ModuleList(
            rnn(cfg.hidden_size, cfg.hidden_size, batch_first=True) for _ in range(cfg.num_layers)
        )
        self.dropout = nn.Dropout(cfg.dropout)

    @property
    def stride(self) -> int:
        return self.feature_config.frame_shift_samples

    @property
    def num_layers(self) -> int:
        return self.cfg.num_layers

    @property
    def hidden_size(self) -> int:
        return self.cfg.hidden_size

    @torch.no_grad()
    def features(
        self, wavs: torch.Tensor, wav_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, S)`` samples -> ``(B, T, num_mel_bins)`` fbank (zero-padded) and ``(B,)``
        frames; computed on the CPU one utterance at a time, as ``FbankUpstream`` does."""
        return batch_features(wavs, wav_lengths, self.feature_config, self.cfg.utterance_cmvn)

    def encode(self, feats: torch.Tensor) -> list[torch.Tensor]:
        """``(B, T, num_mel_bins)`` features -> ``num_layers + 1`` hidden states ``(B, T, H)``;
        frame t of each depends on feature frames 0..t only."""
        x = self.input_projection(feats)
        hidden = [x]
        for i, rnn in enumerate(self.rnns):
            out = self.dropout(rnn(x)[0])
            x = out + x if self.cfg.residual and i > 0 else out
            hidden.append(x)
        return hidden

    def forward(self, wavs: torch.Tensor, wav_lengths: torch.Tensor | None = None) -> APCOutput:
        """wavs: ``(B, S)`` zero-padded; wav_lengths: ``(B,)`` samples (None: all of ``S``)."""
        if wav_lengths is None:
            wav_lengths = torch.full((wavs.shape[0],), wavs.shape[1], device=wavs.device)
        feats, lengths = self.features(wavs, wav_lengths)
        return APCOutput(self.encode(feats), lengths, feats)


class APCPretraining(nn.Module):
    """Future-frame prediction: ``forward(batch) -> ModelOutput``; ``batch`` has ``wavs``
    ``(B, S)`` and ``lengths`` ``(B,)``."""

    def __init__(self, cfg: APCConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = APCModel(cfg)
        self.postnet = nn.Linear(cfg.hidden_size, cfg.num_mel_bins)

    def forward(self, batch: Any) -> ModelOutput:
        n = self.cfg.n_future
        out = self.backbone(batch.wavs, batch.lengths)
        x = out.features
        pred = self.postnet(out.hidden_states[-1][:, :-n]).float()  # frame t predicts t + n
        valid = length_mask(out.lengths - n, pred.shape[1])  # (B, T - n): t + n < length
        l1 = (pred - x[:, n:]).abs().mean(-1)[valid]
        copy = (x[:, :-n] - x[:, n:]).abs().mean(-1)[valid]  # predicting x_t: the trivial answer
        count = max(int(valid.sum()), 1)
        stats = {"copy_loss": copy.sum() / count}
        return ModelOutput(loss=l1.sum(), sample_size=int(valid.sum()), stats=stats)

    def export_upstream(self) -> dict[str, Any]:
        """What an exported upstream file holds (see ``speechssl.upstream``)."""
        return export_backbone("apc", self.cfg, self.backbone)


register_method(SSLMethod("apc", APCConfig, APCPretraining, APCModel, PRESETS))
