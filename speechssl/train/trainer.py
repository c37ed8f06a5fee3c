"""The one Trainer of the toolkit: AdamW + LR schedule, gradient accumulation, clipping, bf16
autocast on GPUs, DDP under ``torchrun``, exact checkpoint/resume, NaN/Inf step skipping, logs.

Gradient normalization (as fairseq): the model returns the SUM of its per-unit losses and the
number of units (``sample_size``); each micro-batch's summed loss is backpropagated as is, and
before the optimizer step the gradients are multiplied by ``world_size / total sample_size``
(the total over every micro-batch of every process; DDP has already averaged over processes).
So k accumulated micro-batches, or k processes with a k-th of the batch each, give the update of
one process with the whole batch, up to float rounding.

Usage::

    trainer = Trainer(model, AudioDataset("data/train"), TrainerConfig(...), "exp/ssl/x",
                      config={"model": asdict(model_cfg)})
    trainer.train(resume=True)   # continues from exp/ssl/x/checkpoints/last.pt if there is one
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from speechssl.config import to_dict
from speechssl.data.audio import SAMPLE_RATE
from speechssl.data.dataset import LengthBucketSampler, collate
from speechssl.errors import SpeechSSLError
from speechssl.train.checkpoint import (
    check_plain,
    checkpoint_dir,
    load_latest_checkpoint,
    numbered_checkpoints,
    save_checkpoint,
)
from speechssl.train.config import TrainerConfig
from speechssl.train.distributed import (
    all_gather_object,
    all_reduce_sum,
    env_dist_info,
    init_distributed,
    resolve_device,
)
from speechssl.train.log import TrainLog, log
from speechssl.train.optim import build_optimizer, build_scheduler
from speechssl.train.protocol import ModelOutput
from speechssl.train.rng import (
    SeededBatchDataset,
    forked_rng,
    get_rng_state,
    seed_everything,
    set_rng_state,
)


class TrainingError(SpeechSSLError, RuntimeError):
    """Training cannot go on (e.g. too many consecutive NaN/Inf steps); the message says why."""


class Trainer:
    """Trains ``model`` (``forward(batch) -> ModelOutput``) on ``train_dataset``.

    Args:
        train_dataset: a map-style dataset with ``durations`` (seconds per item, for batching)
            unless ``sampler`` is given; ``collate_fn`` turns its items into a batch with
            ``.to(device)`` (and ``utt_ids``, ``lengths`` for warnings and throughput).
        cfg: the TrainerConfig.
        exp_dir: gets ``checkpoints/``, ``tensorboard/``, ``train.log``, ``train_log.jsonl``.
        valid_dataset: evaluated (loss per unit and stats) at every checkpoint.
        config: plain dict stored in checkpoints under ``"config"`` (e.g. the model config);
            the trainer config is added as ``config["trainer"]``.
        sampler: batch sampler with ``__len__``, ``state_dict``/``load_state_dict`` and the
            position semantics of ``LengthBucketSampler`` (the default, built from ``cfg``).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        train_dataset: Dataset,
        cfg: TrainerConfig,
        exp_dir: str | Path,
        collate_fn: Callable = collate,
        valid_dataset: Dataset | None = None,
        config: dict | None = None,
        sampler: LengthBucketSampler | None = None,
    ):
        self.cfg = cfg
        self.exp_dir = Path(exp_dir)
        self.device = resolve_device(cfg.device, env_dist_info())
        self.dist = init_distributed(self.device)
        bf16_ok = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and bf16_ok)
        if self.use_bf16 and self.device.type == "cuda" and not bf16_ok:
            raise TrainingError(f"{torch.cuda.get_device_name()} has no bf16; use precision: fp16")
        self.use_fp16 = cfg.precision == "fp16"
        self.scaler = torch.amp.GradScaler(
            self.device.type, init_scale=cfg.fp16_init_scale, enabled=self.use_fp16
        )
        self.model = model.to(self.device)
        self.ddp_model: torch.nn.Module = self.model
        if self.dist.enabled:
            self.ddp_model = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=cfg.find_unused_parameters,
            )
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.train_dataset, self.valid_dataset = train_dataset, valid_dataset
        self.collate_fn = collate_fn
        self.sampler = sampler or self._bucket_sampler(train_dataset, shuffle=cfg.shuffle)
        if len(self.sampler) == 0:
            raise TrainingError("the training set gives no batches; is the data dir empty?")
        self.config = dict(config or {})
        check_plain(self.config)
        self.sample_rate = getattr(train_dataset, "sample_rate", SAMPLE_RATE)
        self.ckpt_dir = checkpoint_dir(self.exp_dir)
        self.num_updates = self.epoch = self.batches_done = 0
        self.bad_steps = 0
        self.last_checkpoint: Path | None = None
        self._saved_at: int | None = None
        self._last_time = time.perf_counter()
        self.log = TrainLog(self.exp_dir, enabled=False, total=0, initial=0)

    def _bucket_sampler(self, dataset: Dataset, shuffle: bool, **kwargs) -> LengthBucketSampler:
        durations = getattr(dataset, "durations", None)
        if durations is None:
            raise TypeError(
                f"{type(dataset).__name__} has no `durations` (seconds per item); add it or pass "
                "a sampler"
            )
        return LengthBucketSampler(
            durations,
            self.cfg.max_batch_seconds,
            self.cfg.max_batch_size,
            shuffle=shuffle,
            seed=self.cfg.seed,
            num_replicas=self.dist.world_size,
            rank=self.dist.rank,
            **kwargs,
        )

    # ---- the loop ------------------------------------------------------------------------

    def train(self, resume: bool = False) -> dict:
        """Train up to ``cfg.max_updates`` (or ``cfg.stop_after``) updates; with ``resume``,
        first continue from the newest readable checkpoint in ``exp_dir/checkpoints`` if any.
        Returns ``{"num_updates", "epoch", "checkpoint"}``."""
        if not (resume and self._resume()):
            if not resume and numbered_checkpoints(self.ckpt_dir):
                raise TrainingError(
                    f"{self.ckpt_dir} already holds checkpoints; pass resume=True to continue "
                    "that run, or delete the folder (or choose another exp dir) to start over"
                )
            seed_everything(self.cfg.seed + self.dist.rank)
        stop_at = min(self.cfg.max_updates, self.cfg.stop_after or self.cfg.max_updates)
        self.log = TrainLog(
            self.exp_dir,
            enabled=self.dist.is_main,
            total=self.cfg.max_updates,
            initial=self.num_updates,
            progress_bar=self.cfg.progress_bar,
        )
        try:
            self.model.train()
            pending: list = []  # micro-batches of the next update (may span an epoch boundary)
            self._last_time = time.perf_counter()
            while self.num_updates < stop_at:
                self._train_epoch(stop_at, pending)
            if self._saved_at != self.num_updates:
                self._checkpoint()
        finally:
            self.log.close()
        last = str(self.last_checkpoint) if self.last_checkpoint else None
        return {"num_updates": self.num_updates, "epoch": self.epoch, "checkpoint": last}

    def _train_epoch(self, stop_at: int, pending: list) -> None:
        self.sampler.load_state_dict({"epoch": self.epoch, "batches_done": self.batches_done})
        self.epoch, self.batches_done = self.sampler.epoch, self.sampler.batches_done
        for batch in self._loader(self.train_dataset, self.sampler, self.batches_done):
            self.batches_done += 1  # the loader prefetches; this counts what was trained on
            pending.append(batch)
            if len(pending) < self.cfg.grad_accum:
                continue
            self._update(pending)
            pending.clear()
            if self.num_updates % self.cfg.save_every == 0 and self._saved_at != self.num_updates:
                self._checkpoint()
            if self.num_updates >= stop_at:
                return
        self.epoch, self.batches_done = self.epoch + 1, 0

    def _loader(self, dataset: Dataset, sampler, start: int) -> DataLoader:
        # An explicit generator: iterating a DataLoader without one draws its worker base seed
        # from the global torch RNG, which would shift the model's random stream after resume.
        seed = np.random.SeedSequence([self.cfg.seed, self.epoch, start, self.dist.rank])
        generator = torch.Generator().manual_seed(int(seed.generate_state(1)[0]))
        return DataLoader(
            SeededBatchDataset(dataset),
            batch_sampler=sampler,
            collate_fn=self.collate_fn,
            num_workers=self.cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=generator,
        )

    def _autocast(self):
        dtype = torch.float16 if self.use_fp16 else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.use_bf16 or self.use_fp16)

    def _zeros(self) -> dict[str, torch.Tensor]:
        keys = ("loss", "sample_size", "batches")
        sums = defaultdict(lambda: torch.zeros((), dtype=torch.float64, device=self.device))
        sums.update({k: torch.zeros((), dtype=torch.float64, device=self.device) for k in keys})
        return sums

    def _add(self, sums: dict[str, torch.Tensor], out: ModelOutput, batch) -> None:
        """Add a batch's summed loss, sample size, audio seconds and stats to ``sums``."""
        sums["loss"] += out.loss.detach().double()
        sums["sample_size"] += torch.as_tensor(out.sample_size, device=self.device).double()
        sums["batches"] += 1
        lengths = getattr(batch, "lengths", None)
        if lengths is not None:
            sums["audio_seconds"] += lengths.sum().double() / self.sample_rate
        for key, value in out.stats.items():
            sums[f"stat/{key}"] += torch.as_tensor(value, device=self.device).detach().double()

    def _forward_backward(self, micro: list) -> dict[str, torch.Tensor]:
        """Backpropagate each micro-batch's summed loss (not yet normalized); returns the sums
        of ``_add`` over the micro-batches, not yet reduced over processes."""
        sums = self._zeros()
        for k, batch in enumerate(micro):
            batch = batch.to(self.device, non_blocking=True)
            # DDP all-reduces gradients in the backward of the last micro-batch only.
            sync = k == len(micro) - 1 or not self.dist.enabled
            with contextlib.nullcontext() if sync else self.ddp_model.no_sync():
                with self._autocast():
                    out: ModelOutput = self.ddp_model(batch)
                self.scaler.scale(out.loss).backward()  # the loss itself unless fp16
            self._add(sums, out, batch)
        return sums

    def _reduce(self, sums: dict[str, torch.Tensor], union_keys: bool = False) -> dict[str, float]:
        """Sum over processes in one all_reduce. Processes must hold the same keys, or pass
        ``union_keys`` (one more collective) when some may have seen no batch."""
        keys = sorted(sums)
        if union_keys:
            keys = sorted(set().union(*all_gather_object(keys)))
            zero = torch.zeros((), dtype=torch.float64, device=self.device)
            sums = {k: sums.get(k, zero) for k in keys}
        vector = all_reduce_sum(torch.stack([sums[k].double() for k in keys]))
        return dict(zip(keys, vector.tolist(), strict=True))

    def _update(self, micro: list) -> None:
        if hasattr(self.model, "set_num_updates"):
            self.model.set_num_updates(self.num_updates)
        totals = self._reduce(self._forward_backward(micro))
        size = totals["sample_size"]
        if not math.isfinite(totals["loss"]) or size <= 0:
            return self._skip(micro, f"loss {totals['loss']} over sample size {size:g}")
        self.scaler.unscale_(self.optimizer)  # no-op unless fp16
        scale = self.dist.world_size / size
        for p in self.params:
            if p.grad is not None:
                p.grad.mul_(scale)
        max_norm = self.cfg.clip_norm if self.cfg.clip_norm > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
        if not math.isfinite(grad_norm) and self.use_fp16:
            # an fp16 overflow: GradScaler skips the step and halves the scale; not a bad step
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.log.line(
                f"update {self.num_updates + 1}: fp16 gradient overflow, update skipped, loss "
                f"scale now {self.scaler.get_scale():g}"
            )
            return None
        if not math.isfinite(grad_norm):
            return self._skip(micro, f"gradient norm {grad_norm}")
        lr = self.optimizer.param_groups[0]["lr"]
        self.scaler.step(self.optimizer)  # optimizer.step() unless fp16
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.num_updates += 1
        self.bad_steps = 0
        if hasattr(self.model, "after_optimizer_step"):
            self.model.after_optimizer_step(self.num_updates)
        self._record(totals, lr, grad_norm)

    def _skip(self, micro: list, reason: str) -> None:
        """Drop the gradients of an update whose loss or gradients are not finite."""
        self.optimizer.zero_grad(set_to_none=True)
        self.bad_steps += 1
        utts = [u for batch in micro for u in getattr(batch, "utt_ids", [])]
        shown = ", ".join(utts[:20]) + (f" ... ({len(utts)} in all)" if len(utts) > 20 else "")
        where = f" (rank {self.dist.rank})" if self.dist.enabled else ""
        self.log.warning(
            f"update {self.num_updates + 1}: {reason}; skipped the update "
            f"({self.bad_steps}/{self.cfg.max_bad_steps} in a row). Utterances{where}: {shown}"
        )
        if self.bad_steps >= self.cfg.max_bad_steps:
            raise TrainingError(
                f"{self.bad_steps} consecutive updates had a NaN/Inf loss or gradient (last "
                f"batch: {shown}). Lower lr, set clip_norm, check these utterances "
                "(`speechssl data validate`), or resume from an earlier checkpoint"
            )

    def _record(self, totals: dict[str, float], lr: float, grad_norm: float) -> None:
        now = time.perf_counter()
        elapsed, self._last_time = now - self._last_time, now
        record = {
            "num_updates": self.num_updates,
            "epoch": self.epoch,
            "loss": totals["loss"] / totals["sample_size"],
            "lr": lr,
            "grad_norm": grad_norm,
            "sample_size": totals["sample_size"],
        }
        if "audio_seconds" in totals:
            record["audio_seconds"] = totals["audio_seconds"]
            record["audio_s_per_s"] = totals["audio_seconds"] / max(elapsed, 1e-9)
        for key, value in totals.items():
            if key.startswith("stat/"):  # mean over micro-batches and processes
                record[key[5:]] = value / totals["batches"]
        if self.use_fp16:
            record["loss_scale"] = self.scaler.get_scale()
        if self.device.type == "cuda":
            record["gpu_mem_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        self.log.record(record)
        if self.num_updates % self.cfg.log_every == 0:
            self.log.summary(self.num_updates, self.epoch)
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)

    # ---- validation ----------------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss per unit (and mean stats) over ``valid_dataset``, split across processes. Runs
        with forked, fixed-seed RNGs, so it neither depends on nor disturbs training's stream."""
        assert self.valid_dataset is not None
        sampler = self._bucket_sampler(self.valid_dataset, shuffle=False, equal_per_rank=False)
        sums = self._zeros()
        self.model.eval()
        try:
            with forked_rng(self.cfg.seed):
                for batch in self._loader(self.valid_dataset, sampler, 0):
                    batch = batch.to(self.device, non_blocking=True)
                    with self._autocast():
                        out = self.model(batch)
                    self._add(sums, out, batch)
        finally:
            self.model.train()
        totals = self._reduce(sums, union_keys=True)
        result = {"valid_loss": totals["loss"] / max(totals["sample_size"], 1e-12)}
        for key, value in totals.items():
            if key.startswith("stat/"):
                result[f"valid_{key[5:]}"] = value / max(totals["batches"], 1)
        return result

    # ---- checkpoints ---------------------------------------------------------------------

    def _checkpoint(self) -> None:
        """Validate (if there is a validation set) and save; every process must call this."""
        if self.valid_dataset is not None:
            self.log.validation(self.num_updates, self.validate())
        self.save()

    def save(self) -> Path | None:
        """Write ``checkpoints/ckpt-<num_updates>.pt`` and ``last.pt`` (main process; every
        process must call it, as each one's RNG state is gathered)."""
        rng_by_rank = all_gather_object(get_rng_state())
        self._saved_at = self.num_updates
        if not self.dist.is_main:
            return None
        sampler_state = self.sampler.state_dict()
        sampler_state.update(epoch=self.epoch, batches_done=self.batches_done)
        state = {
            "config": {**self.config, "trainer": to_dict(self.cfg)},
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.use_fp16 else None,  # bf16/fp32: none
            "rng": rng_by_rank[0],
            "rng_by_rank": rng_by_rank,
            "sampler": sampler_state,
            "num_updates": self.num_updates,
            "epoch": self.epoch,
        }
        self.last_checkpoint = save_checkpoint(state, self.ckpt_dir, self.cfg.keep_last)
        self.log.line(f"saved {self.last_checkpoint}")
        return self.last_checkpoint

    def _resume(self) -> bool:
        found = load_latest_checkpoint(self.ckpt_dir)
        if found is None:
            log.info("no checkpoint in %s; training from scratch", self.ckpt_dir)
            return False
        path, state = found
        for key, (saved, now) in self.cfg.changes_from(state["config"].get("trainer", {})).items():
            log.warning(
                "%s: trainer option %s was %r and is now %r; the run will not repeat an "
                "uninterrupted one exactly",
                path,
                key,
                saved,
                now,
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.use_fp16 and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.num_updates = self._saved_at = int(state["num_updates"])
        self.sampler.load_state_dict(state["sampler"])
        self.epoch, self.batches_done = self.sampler.epoch, self.sampler.batches_done
        by_rank = state.get("rng_by_rank") or [state["rng"]]
        if len(by_rank) == self.dist.world_size:
            set_rng_state(by_rank[self.dist.rank])
        else:
            log.warning(
                "%s was written by %d process(es), this run has %d: random streams restart from "
                "the seed, so the run will not repeat the original exactly",
                path,
                len(by_rank),
                self.dist.world_size,
            )
            seed_everything(self.cfg.seed + self.dist.rank + self.num_updates)
        self.last_checkpoint = path
        log.info("resumed from %s at update %d", path, self.num_updates)
        return True
