"""TrainerConfig: the values of one training run (YAML through ``speechssl.config.load_config``)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

SCHEDULES = ("linear", "polynomial", "tri_stage", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
# Options that may change when a run is resumed (the data order and the schedule stay the same).
OPERATIONAL = ("stop_after", "save_every", "keep_last", "log_every", "progress_bar", "num_workers")
OPERATIONAL += ("max_bad_steps", "device", "precision")


@dataclass
class TrainerConfig:
    # length: the LR schedule spans max_updates; stop_after ends this invocation earlier (a
    # checkpoint is written) without changing the schedule, e.g. to fit a job time limit.
    max_updates: int = 10000
    stop_after: int | None = None
    # AdamW (decoupled weight decay; none on biases, norm weights and other 1-d parameters)
    lr: float = 5e-4
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    grad_accum: int = 1  # micro-batches per update
    clip_norm: float = 0.0  # max global gradient norm; 0 disables clipping (the norm is logged)
    # learning rate schedule (multiplies lr):
    #   linear      warmup 0 -> 1, then linear decay to 0 at max_updates
    #   polynomial  warmup, then (1 - progress) ** power from 1 down to end_lr_scale
    #   tri_stage   phases (fractions of max_updates): warmup from init_lr_scale, hold at 1,
    #               exponential decay to final_lr_scale; final_lr_scale after the phases
    #   constant    warmup, then 1
    schedule: str = "linear"
    warmup_updates: int | None = None  # when None, warmup_fraction * max_updates
    warmup_fraction: float = 0.08
    power: float = 1.0
    end_lr_scale: float = 0.0
    tri_stage_phases: list[float] = field(default_factory=lambda: [0.1, 0.4, 0.5])
    init_lr_scale: float = 0.01
    final_lr_scale: float = 0.05
    # batches (LengthBucketSampler): padded audio seconds per micro-batch per process
    max_batch_seconds: float = 200.0
    max_batch_size: int | None = None
    shuffle: bool = True
    num_workers: int = 0
    seed: int = 0
    # checkpoints, validation and logs
    save_every: int = 1000  # also validates (when there is a validation set)
    keep_last: int | None = 3  # numbered checkpoints to keep besides last.pt; None keeps all
    log_every: int = 50  # train.log line and TensorBoard scalars
    progress_bar: bool = True
    max_bad_steps: int = 10  # abort after this many consecutive steps with NaN/Inf loss or grads
    # "auto": bf16 autocast on CUDA (when supported), fp32 on CPU; "fp16": fp16 autocast with
    # dynamic loss scaling (GradScaler: an overflowing update is skipped and the scale halved,
    # doubled again after 2000 clean updates), for GPUs without bf16 (V100, T4)
    precision: str = "auto"
    fp16_init_scale: float = 128.0  # fairseq's fp16_init_scale
    device: str = "auto"
    find_unused_parameters: bool = False  # DDP; for models that skip parameters in some steps

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("float", "int") and (isinstance(value, str | bool) or value is None):
                # fail here, naming the field, rather than deep inside AdamW
                raise ValueError(f"TrainerConfig: {f.name} must be a number, found {value!r}")
        checks = [
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}"),
            (self.device in DEVICES, f"device must be one of {DEVICES}"),
            (self.max_updates >= 1, "max_updates must be >= 1"),
            (self.grad_accum >= 1, "grad_accum must be >= 1"),
            (self.save_every >= 1 and self.log_every >= 1, "save_every, log_every must be >= 1"),
            (self.keep_last is None or self.keep_last >= 1, "keep_last must be >= 1 or None"),
            (len(self.betas) == 2, "betas must be two numbers"),
            (len(self.tri_stage_phases) == 3, "tri_stage_phases must be [warmup, hold, decay]"),
            (self.max_bad_steps >= 1, "max_bad_steps must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"TrainerConfig: {message}")

    def num_warmup_updates(self) -> int:
        if self.warmup_updates is not None:
            return self.warmup_updates
        return int(self.warmup_fraction * self.max_updates)

    def changes_from(self, saved: dict) -> dict[str, tuple[object, object]]:
        """``{field: (saved value, current value)}`` for the fields (besides ``OPERATIONAL``
        ones) that differ from ``saved`` (a checkpoint's ``config["trainer"]``)."""
        return {
            f.name: (saved[f.name], getattr(self, f.name))
            for f in fields(self)
            if f.name not in OPERATIONAL
            and f.name in saved
            and saved[f.name] != getattr(self, f.name)
        }
