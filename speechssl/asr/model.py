"""CTC ASR model: any :class:`~speechssl.upstream.Upstream` + a head (linear, BiLSTM or
Transformer layers) + a linear layer to the tokens, trained with CTC by the one Trainer.

The upstream (FBANK, an own SSL checkpoint, an imported HF/fairseq model) is frozen for the first
``freeze_updates`` optimizer steps while the randomly initialised head settles, then fine-tuned
(the wav2vec 2.0 fine-tuning recipe; -1 keeps it frozen). The convolutional feature encoder of
wav2vec2-style upstreams stays frozen throughout (``freeze_feature_encoder``), as in fairseq's
fine-tuning configs. SpecAugment-style masking is applied to the chosen hidden state in training.

A saved model (``speechssl-asr-v1``) holds the config, the tokens and all weights, and the
upstream's architecture (not its file path), so it loads anywhere with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from speechssl.config import from_dict
from speechssl.features.specaug import SpecAugConfig, spec_augment
from speechssl.io import atomic_torch_save
from speechssl.nn.conv_encoder import length_mask
from speechssl.nn.rnn import BiLSTM
from speechssl.train.protocol import ModelOutput
from speechssl.upstream import Upstream, UpstreamError, describe_upstream, rebuild_upstream

ASR_FORMAT = "speechssl-asr-v1"
HEADS = ("linear", "blstm", "transformer")


@dataclass
class ASRConfig:
    upstream: str = (
        "fbank"  # load_upstream spec: fbank | exported upstream | checkpoint | HF folder
    )
    layer: int = -1  # which hidden state feeds the head (-1: the last)
    freeze_updates: int = 0  # upstream frozen for this many updates; -1: always frozen
    freeze_feature_encoder: bool = True  # wav2vec2-style CNN stays frozen when fine-tuning
    head: str = "blstm"  # linear | blstm | transformer
    head_layers: int = 2
    head_dim: int = 256  # BiLSTM: units per direction; Transformer: model dim
    head_heads: int = 4  # Transformer attention heads
    dropout: float = 0.1
    subsample: int = 1  # stack this many frames before the head (10 ms fbank -> 20 ms at 2)
    specaug: SpecAugConfig = field(default_factory=SpecAugConfig)
    residual: bool = False  # BiLSTM head: layers 2.. add their input to their output
    layerdrop: float = 0.0  # stochastic depth: a head layer's residual branch dropped per batch

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"ASRConfig.head must be one of {HEADS}, found {self.head!r}")
        if self.subsample < 1:
            raise ValueError(f"ASRConfig.subsample must be >= 1, found {self.subsample}")
        if not 0.0 <= self.layerdrop < 1.0:
            raise ValueError(f"model.layerdrop must be in [0, 1), found {self.layerdrop}")
        if self.layerdrop > 0 and self.head == "blstm" and not self.residual:
            raise ValueError(
                "model.layerdrop needs model.residual=true with the blstm head (a dropped "
                "layer passes its input on, so its input and output must add)"
            )


def _stochastic_depth(delta: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """A residual branch kept with probability 1 - p per batch and scaled by 1 / (1 - p) in
    training (so no rescaling at test time); computed either way, so every parameter gets a
    gradient (zero when dropped) and DDP sees the same graph on every rank."""
    if not training or p == 0:
        return delta
    keep = (torch.rand((), device=delta.device) >= p).to(delta.dtype)
    return delta * (keep / (1 - p))


class _TransformerHead(nn.Module):
    def __init__(self, input_dim: int, cfg: ASRConfig):
        super().__init__()
        self.proj = nn.Linear(input_dim, cfg.head_dim)
        layer = nn.TransformerEncoderLayer(
            cfg.head_dim,
            cfg.head_heads,
            4 * cfg.head_dim,
            cfg.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.layers = nn.TransformerEncoder(layer, cfg.head_layers, enable_nested_tensor=False)
        self.layerdrop = cfg.layerdrop

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        pad = ~length_mask(lengths, x.shape[1])
        if not self.layerdrop:
            return self.layers(self.proj(x), src_key_padding_mask=pad)
        x = self.proj(x)
        for layer in self.layers.layers:  # pre-LN layers are residual: drop the whole update
            delta = layer(x, src_key_padding_mask=pad) - x
            x = x + _stochastic_depth(delta, self.layerdrop, self.training)
        return x


class _BLSTMHead(nn.Module):
    """``head_layers`` BiLSTM layers; with ``residual``, one module per layer and layers 2..
    computing ``x + f(x)`` (their branch dropped per batch with ``layerdrop``)."""

    def __init__(self, input_dim: int, cfg: ASRConfig):
        super().__init__()
        self.residual, self.layerdrop, self.dropout = cfg.residual, cfg.layerdrop, cfg.dropout
        if not cfg.residual:
            self.lstm = BiLSTM(
                input_dim,
                cfg.head_dim,
                num_layers=cfg.head_layers,
                dropout=cfg.dropout if cfg.head_layers > 1 else 0.0,
            )
            return
        dims = [input_dim] + [2 * cfg.head_dim] * (cfg.head_layers - 1)
        self.layers = nn.ModuleList(BiLSTM(d, cfg.head_dim) for d in dims)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if not self.residual:
            return self.lstm(x, lengths)
        x = self.layers[0](x, lengths)
        for layer in self.layers[1:]:
            h = layer(F.dropout(x, self.dropout, self.training), lengths)
            x = x + _stochastic_depth(h, self.layerdrop, self.training)
        return x


def _head(input_dim: int, cfg: ASRConfig) -> tuple[nn.Module | None, int]:
    if cfg.head == "linear" or cfg.head_layers == 0:
        return None, input_dim
    if cfg.head == "blstm":
        return _BLSTMHead(input_dim, cfg), 2 * cfg.head_dim
    return _TransformerHead(input_dim, cfg), cfg.head_dim


class CTCModel(nn.Module):
    """``forward(batch) -> ModelOutput`` (CTC loss summed over utterances, ``sample_size`` =
    target tokens) for the Trainer; :meth:`logprobs` for decoding."""

    def __init__(self, upstream: Upstream, tokens: list[str], cfg: ASRConfig):
        super().__init__()
        self.cfg = cfg
        self.tokens = list(tokens)
        self.upstream = upstream
        depth = upstream.num_layers + 1
        if not -depth <= cfg.layer < depth:
            raise ValueError(f"layer {cfg.layer}: the upstream has {depth} hidden states")
        self.dropout = nn.Dropout(cfg.dropout)
        self.head, out_dim = _head(upstream.hidden_size * cfg.subsample, cfg)
        self.output = nn.Linear(out_dim, len(tokens))
        self.num_updates = 0
        if cfg.freeze_feature_encoder:
            encoder = getattr(getattr(upstream, "model", None), "feature_extractor", None)
            for p in encoder.parameters() if encoder is not None else ():
                p.requires_grad_(False)

    @property
    def stride(self) -> int:
        """Input samples per output frame."""
        return self.upstream.stride * self.cfg.subsample

    def upstream_frozen(self) -> bool:
        f = self.cfg.freeze_updates
        return (
            f < 0
            or self.num_updates < f
            or not any(p.requires_grad for p in self.upstream.parameters())
        )

    def set_num_updates(self, num_updates: int) -> None:
        self.num_updates = num_updates

    def _features(self, wavs: torch.Tensor, wav_lengths: torch.Tensor):
        frozen = self.upstream_frozen()
        if frozen:
            self.upstream.eval()  # no dropout in a frozen upstream
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            out = self.upstream(wavs, wav_lengths)
        x, lengths = out.hidden_states[self.cfg.layer], out.lengths
        if self.training:
            x = spec_augment(x, lengths, self.cfg.specaug, generator=None)
        k = self.cfg.subsample
        if k > 1:  # stack k consecutive frames (the last partial group is zero-padded)
            pad = (-x.shape[1]) % k
            x = F.pad(x, (0, 0, 0, pad)).reshape(x.shape[0], -1, k * x.shape[2])
            lengths = torch.div(lengths + k - 1, k, rounding_mode="floor")
        return x, lengths

    def logprobs(
        self, wavs: torch.Tensor, wav_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``wavs`` (B, S), ``wav_lengths`` (B,) -> log-probabilities (B, T, V), lengths (B,)."""
        x, lengths = self._features(wavs, wav_lengths)
        x = self.dropout(x)
        if self.head is not None:
            x = self.head(x, lengths)
        return self.output(self.dropout(x)).float().log_softmax(-1), lengths

    def forward(self, batch) -> ModelOutput:
        if batch.labels is None:
            raise ValueError("CTC training needs token targets (an ASRDataset)")
        logp, lengths = self.logprobs(batch.wavs, batch.lengths)
        targets, target_lengths = batch.labels, batch.label_lengths
        weights = getattr(batch, "weights", None)
        loss = F.ctc_loss(
            logp.transpose(0, 1),
            targets.clamp(min=0),
            lengths,
            target_lengths,
            blank=0,
            reduction="sum" if weights is None else "none",
            zero_infinity=True,  # an utterance with fewer frames than tokens contributes 0
        )
        if weights is not None:  # pseudo-labelled utterances count by their weight
            loss = (loss * weights.to(loss.dtype)).sum()
        if getattr(batch, "soft_targets", None) is not None:
            loss = loss + distillation_loss(logp, lengths, batch)
        stats: dict[str, Any] = {}
        if not self.training:
            stats["token_error_rate"] = _greedy_token_error_rate(logp, lengths, batch)
        return ModelOutput(loss, int(target_lengths.sum()), stats)


def distillation_loss(logp: torch.Tensor, lengths: torch.Tensor, batch) -> torch.Tensor:
    """Frame-level KL(teacher || student) summed over frames, times each utterance's
    ``soft_weights``. Teacher posteriors whose frame count differs from the student's (a
    speed-perturbed input) are resampled in time to the student's frames (nearest frame)."""
    total = logp.new_zeros(())
    for b in range(logp.shape[0]):
        n_soft, n = int(batch.soft_lengths[b]), int(lengths[b])
        weight = float(batch.soft_weights[b])
        if n_soft == 0 or n == 0 or weight == 0.0:
            continue
        q = batch.soft_targets[b, :n_soft].to(logp.dtype)
        if n_soft != n:
            q = q[
                ((torch.arange(n, device=q.device) + 0.5) * n_soft / n).long().clamp(max=n_soft - 1)
            ]
        kl = (q * (q.clamp_min(1e-8).log() - logp[b, :n])).sum()
        total = total + weight * kl
    return total


def _greedy_token_error_rate(logp: torch.Tensor, lengths: torch.Tensor, batch) -> float:
    """Token edit distance of the greedy output over target tokens (validation only)."""
    import jiwer

    best = logp.argmax(-1).cpu()
    hyps, refs = [], []
    for b in range(best.shape[0]):
        ids = torch.unique_consecutive(best[b, : int(lengths[b])])
        hyps.append(" ".join(str(int(i)) for i in ids if i != 0) or "<empty>")
        n = int(batch.label_lengths[b])
        refs.append(" ".join(str(int(i)) for i in batch.labels[b, :n].cpu()))
    return float(jiwer.wer(refs, hyps))


# ---------------------------------------------------------------------------------------------
# saving and loading


def model_config(model: CTCModel) -> dict[str, Any]:
    return {
        "task": "asr",
        "asr": dataclasses.asdict(model.cfg),
        "tokens": model.tokens,
        "upstream_arch": describe_upstream(model.upstream),
    }


def save_model(model: CTCModel, path: str | os.PathLike) -> Path:
    """Write the inference model (config, tokens, weights) atomically."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return atomic_torch_save(
        {"format": ASR_FORMAT, "config": model_config(model), "model": state}, path
    )


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> CTCModel:
    """An ASR model from a saved model, a training checkpoint, or an experiment folder (its
    ``model.pt``, else ``checkpoints/last.pt``). The model is returned in eval mode."""
    from speechssl.train.checkpoint import CheckpointError, load_checkpoint

    path = Path(path)
    if path.is_dir():
        path = path / "model.pt" if (path / "model.pt").is_file() else path / "checkpoints/last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no ASR model here; train one with `speechssl asr-train`")
    try:
        ckpt = load_checkpoint(path, expect_format=None)
    except CheckpointError as e:
        raise UpstreamError(str(e)) from None
    config = ckpt.get("config") or {}
    if config.get("task") != "asr":
        raise UpstreamError(f"{path}: not an ASR model (config task {config.get('task')!r})")
    state = {k.removeprefix("module."): v for k, v in ckpt["model"].items()}
    upstream = rebuild_upstream(config["upstream_arch"], state, "upstream.model.")
    model = CTCModel(upstream, config["tokens"], from_dict(ASRConfig, config["asr"], str(path)))
    model.load_state_dict(state)
    return model.to(device).eval()
