"""data2vec audio (Baevski et al. 2022): regress an EMA teacher's averaged top-K layer outputs.

Student and teacher share the conv feature encoder, the feature projection and the positional
conv; only the transformer layers (and the encoder LayerNorm) of the teacher are an exponential
moving average of the student's (fairseq ``data2vec_audio.py``: ``pos_conv`` is an EMA skip key,
copied from the student; here the teacher holds the student's very module). Per update
(paper §3, reference sheet §6)::

    y      = feature projection output (before dropout and masking), the teacher's input
    target = mean over the top K layers l of InstanceNorm_time(FFN_l(teacher(y)))   at masked t
    pred   = final_proj(student(mask(y)))                                          at masked t
    L      = Σ_{t masked} ||pred_t - target_t||² / sqrt(D)      (Smooth L1 if loss_beta > 0)

FFN_l is layer l's fc2 output before dropout, residual and LayerNorm (paper fn. 5). The
instance norm runs over the valid frames of each utterance in fp32, eps 1e-5 (fairseq includes
padded frames; pretraining crops, so there are none). The teacher runs in eval mode without
gradients and is updated in fp32 after each optimizer step (``after_optimizer_step``):
``teacher = tau·teacher + (1-tau)·student`` with ``tau`` linear from ``ema_decay`` to
``ema_end_decay`` over ``ema_anneal_end_step`` updates, then constant.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from speechssl.nn.conv_encoder import length_mask
from speechssl.ssl import SSLMethod, get_method, register_method
from speechssl.ssl.convert_families import data2vec_from_fairseq, data2vec_from_hf
from speechssl.ssl.masked import TINY_BACKBONE, MaskedPretraining
from speechssl.ssl.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model
from speechssl.train.protocol import ModelOutput


@dataclass
class Data2VecConfig(Wav2Vec2Config):
    """data2vec audio settings; defaults are BASE (fairseq ``audio/pretraining/base_librispeech``).
    Backbone and masking fields are wav2vec 2.0's; its quantizer and contrastive fields are
    unused."""

    extractor_mode: str = "layer"
    normalize_waveform: bool = True
    feature_grad_mult: float = 1.0
    input_dropout: float = 0.0
    feature_dropout: float = 0.0
    pos_conv_style: str = "layer_norm_stack"
    pos_conv_depth: int = 5
    pos_conv_kernel: int = 19  # fairseq conv_pos 95 // depth 5
    min_masks: int = 1
    feature_penalty_weight: float = 0.0  # data2vec has no feature penalty
    average_top_k_layers: int = 8  # K
    instance_norm_targets: bool = True  # per layer, over time, before averaging
    loss_beta: float = 0.0  # 0: L2; > 0: Smooth L1 with this beta
    loss_scale: float | None = None  # None: 1 / sqrt(hidden_size)
    ema_decay: float = 0.999  # tau at update 0
    ema_end_decay: float = 0.9999  # tau from ema_anneal_end_step on
    ema_anneal_end_step: int = 30000
    # collapse guard: after this many updates, stop if the std of targets/predictions is lower
    min_target_var: float = 0.1
    min_pred_var: float = 0.01
    collapse_check_after: int = 5000


PRESETS: dict[str, dict[str, Any]] = {
    "base": {},
    # CPU-sized: the EMA schedule shortened to the few hundred updates of a tiny run
    "tiny": dict(
        TINY_BACKBONE,
        num_layers=4,
        pos_conv_kernel=9,
        pos_conv_depth=2,
        # measured on the synthetic corpus, 600 updates: top-2 layers with tau 0.99 -> 0.999
        # moved the loss 6%; tau 0.998 -> 0.9995 collapsed (prediction variance 0.001); all 4
        # layers with tau 0.995 -> 0.999 over 600 updates learned (loss -96%, target and
        # prediction variance ~0.5)
        average_top_k_layers=4,
        ema_decay=0.995,
        ema_end_decay=0.999,
        ema_anneal_end_step=600,
        collapse_check_after=10**9,
    ),
}


def data2vec_config(preset: str = "base", **overrides: Any) -> Data2VecConfig:
    """A preset (``"tiny"``, ``"base"``) with field overrides."""
    return get_method("data2vec").make_config(preset, **overrides)


def ema_decay_at(cfg: Data2VecConfig, num_updates: int) -> float:
    """tau after ``num_updates`` updates: linear from ``ema_decay`` to ``ema_end_decay``."""
    if num_updates >= cfg.ema_anneal_end_step:
        return cfg.ema_end_decay
    progress = num_updates / cfg.ema_anneal_end_step
    return cfg.ema_end_decay - (cfg.ema_end_decay - cfg.ema_decay) * (1 - progress)


def instance_norm_time(x: torch.Tensor, valid: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Normalise every channel over the valid frames of its utterance, fp32, no affine.

    x: ``(B, T, D)``; valid: ``(B, T)`` bool. Padded frames come out 0."""
    x = x.float()
    keep = valid.unsqueeze(-1).float()
    count = keep.sum(1, keepdim=True).clamp(min=1)
    mean = (x * keep).sum(1, keepdim=True) / count
    var = ((x - mean) ** 2 * keep).sum(1, keepdim=True) / count
    return (x - mean) * torch.rsqrt(var + eps) * keep


def _std(x: torch.Tensor) -> torch.Tensor:
    """Mean over dimensions of the std over frames (fairseq ``compute_var``), fp32."""
    x = x.float().reshape(-1, x.shape[-1])
    if x.shape[0] < 2:
        return x.new_zeros(())
    return torch.sqrt(x.var(dim=0) + 1e-6).mean()


class Data2VecPretraining(MaskedPretraining):
    """Student (``backbone`` + ``final_proj``) and EMA teacher (``teacher``, a copy of the
    transformer sharing the student's positional conv): ``forward(batch) -> ModelOutput``."""

    method = "data2vec"
    backbone_cls = Wav2Vec2Model

    def __init__(self, cfg: Data2VecConfig):
        if not 1 <= cfg.average_top_k_layers <= cfg.num_layers:
            raise ValueError(
                f"data2vec: average_top_k_layers={cfg.average_top_k_layers} must be in "
                f"1..num_layers={cfg.num_layers}"
            )
        super().__init__(cfg)
        self.final_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.teacher = self._make_teacher()
        self.ema_decay = ema_decay_at(cfg, 0)

    def _make_teacher(self) -> nn.Module:
        student = self.backbone.encoder
        shared = student.pos_conv
        student.pos_conv = None  # leave it out of the copy
        try:
            teacher = copy.deepcopy(student)
        finally:
            student.pos_conv = shared
        teacher.pos_conv = shared
        for name, p in teacher.named_parameters():
            if not name.startswith("pos_conv."):
                p.requires_grad_(False)
        return teacher.train(False)

    def train(self, mode: bool = True) -> Data2VecPretraining:
        super().train(mode)
        self.teacher.train(False)  # the teacher never drops out; its pos_conv has no dropout
        return self

    def _ema_pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        student = dict(self.backbone.encoder.named_parameters())
        return [
            (p, student[name])
            for name, p in self.teacher.named_parameters()
            if not name.startswith("pos_conv.")
        ]

    @torch.no_grad()
    def ema_step(self, decay: float) -> None:
        """teacher = decay·teacher + (1 - decay)·student, in fp32."""
        for t, s in self._ema_pairs():
            updated = t.float().mul_(decay).add_(s.detach().float(), alpha=1 - decay)
            t.copy_(updated)

    def set_num_updates(self, num_updates: int) -> None:
        super().set_num_updates(num_updates)
        self.ema_decay = ema_decay_at(self.cfg, num_updates)  # logged; right after a resume too

    def after_optimizer_step(self, num_updates: int) -> None:
        self.ema_decay = ema_decay_at(self.cfg, num_updates)
        if self.ema_decay < 1:
            self.ema_step(self.ema_decay)

    @torch.no_grad()
    def targets(self, y: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Teacher targets ``(B, T, D)`` fp32 for projected features ``y`` ``(B, T, D)``."""
        cfg = self.cfg
        out = self.teacher(y, lengths, return_ffn_outputs=True)
        valid = length_mask(lengths, y.shape[1])
        top = out.ffn_outputs[-cfg.average_top_k_layers :]
        if cfg.instance_norm_targets:
            top = [instance_norm_time(f, valid) for f in top]
        return sum(f.float() for f in top) / len(top)

    def forward(self, batch: Any, generator: torch.Generator | None = None) -> ModelOutput:
        cfg = self.cfg
        enc = self.encode_masked(batch, generator)
        mask = enc.mask
        # the teacher sees the unmasked projected features, before dropout
        target = self.targets(enc.projected.detach(), enc.lengths)[mask]
        pred = self.final_proj(enc.hidden[mask]).float()
        if cfg.loss_beta == 0:
            per_frame = F.mse_loss(pred, target, reduction="none").sum(-1)
        else:
            per_frame = F.smooth_l1_loss(pred, target, reduction="none", beta=cfg.loss_beta)
            per_frame = per_frame.sum(-1)
        scale = cfg.loss_scale if cfg.loss_scale is not None else 1 / math.sqrt(pred.shape[-1])
        sample_size = int(mask.sum())
        loss = per_frame.sum() * scale + cfg.feature_penalty_weight * enc.features_pen * sample_size
        target_var, pred_var = _std(target), _std(pred.detach())
        self._check_collapse(float(target_var), float(pred_var))
        stats = {
            "regression": per_frame.detach().sum() * scale / max(sample_size, 1),
            "target_var": target_var,
            "pred_var": pred_var,
            "ema_decay": torch.tensor(self.ema_decay),
            "features_pen": enc.features_pen.detach(),
            "mask_fraction": mask.sum().float() / enc.valid.sum().clamp(min=1),
        }
        return ModelOutput(loss=loss, sample_size=sample_size, stats=stats)

    def _check_collapse(self, target_var: float, pred_var: float) -> None:
        cfg = self.cfg
        if not self.training or self.num_updates < cfg.collapse_check_after:
            return
        if target_var < cfg.min_target_var or pred_var < cfg.min_pred_var:
            raise RuntimeError(
                f"data2vec collapsed at update {self.num_updates}: target std {target_var:.4f} "
                f"(min {cfg.min_target_var}), prediction std {pred_var:.4f} (min "
                f"{cfg.min_pred_var}); lower the learning rate or raise ema_decay, and resume "
                "from an earlier checkpoint"
            )


register_method(
    SSLMethod(
        "data2vec",
        Data2VecConfig,
        Data2VecPretraining,
        Wav2Vec2Model,
        PRESETS,
        hf_model_types=("data2vec-audio",),
        from_hf=data2vec_from_hf,
        fairseq_models=("data2vec_audio",),
        from_fairseq=data2vec_from_fairseq,
    )
)
