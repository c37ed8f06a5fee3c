"""The optimizer (AdamW with decoupled weight decay) and its learning-rate schedule.

Schedules are multipliers of the peak ``lr`` wrapped in ``torch`` ``LambdaLR``: a multiplier takes
``step``, the number of updates done so far, and gives the scale of the learning rate used by the
next update (so the first update uses ``f(0)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from speechssl.train.config import TrainerConfig


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices and kernels, none on biases, norm weights and
    other 1-d parameters (decaying a LayerNorm gain towards 0 only hurts)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: torch.nn.Module, cfg: TrainerConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        betas=(cfg.betas[0], cfg.betas[1]),
        eps=cfg.eps,
    )


def lr_multiplier(cfg: TrainerConfig) -> Callable[[int], float]:
    """The schedule ``cfg.schedule`` as ``step -> scale of cfg.lr``."""
    total = cfg.max_updates
    if cfg.schedule == "tri_stage":
        return _tri_stage(cfg, total)
    warmup = cfg.num_warmup_updates()
    power, end = (
        (1.0, cfg.end_lr_scale) if cfg.schedule == "linear" else (cfg.power, cfg.end_lr_scale)
    )
    constant = cfg.schedule == "constant"

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if constant:
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return end + (1.0 - end) * (1.0 - progress) ** power

    return multiplier


def _tri_stage(cfg: TrainerConfig, total: int) -> Callable[[int], float]:
    """Warmup (linear from ``init_lr_scale``), hold, exponential decay to ``final_lr_scale``
    (the wav2vec 2.0 fine-tuning schedule); phases are fractions of ``max_updates``."""
    warmup, hold, decay = (int(f * total) for f in cfg.tri_stage_phases)
    init, final = cfg.init_lr_scale, cfg.final_lr_scale
    decay_rate = -math.log(final) / decay if decay > 0 else 0.0

    def multiplier(step: int) -> float:
        if step < warmup:
            return init + (1.0 - init) * step / warmup
        step -= warmup
        if step < hold:
            return 1.0
        step -= hold
        if step < decay:
            return math.exp(-decay_rate * step)
        return final

    return multiplier


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainerConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    # A closure (not an object) so LambdaLR's state_dict holds only counters and the schedule
    # always comes from the config.
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(cfg))
