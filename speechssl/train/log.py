"""What a training run reports, written by the main process only:

``<exp_dir>/train_log.jsonl``  one JSON line per update (``num_updates``, ``loss`` per unit, ``lr``,
                               ``grad_norm``, stats ...) and per validation (``valid_loss``)
``<exp_dir>/train.log``        a plain-text line every ``log_every`` updates, and warnings
``<exp_dir>/tensorboard/``     TensorBoard scalars (means over the last ``log_every`` updates)
a tqdm progress line           loss, lr, audio seconds per second, GPU memory
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from speechssl.io import atomic_write_text

log = logging.getLogger("speechssl.train")


class TrainLog:
    def __init__(
        self,
        exp_dir: str | os.PathLike,
        enabled: bool,
        total: int,
        initial: int,
        progress_bar: bool = True,
    ):
        self.enabled = enabled
        self.exp_dir = Path(exp_dir)
        self.jsonl = self.exp_dir / "train_log.jsonl"
        self.text = self.exp_dir / "train.log"
        self._window: dict[str, list[float]] = defaultdict(list)
        self._writer = None
        self._bar = None
        if not enabled:
            return
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        self._forget_after(initial)
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(self.exp_dir / "tensorboard"), purge_step=initial + 1)
        if progress_bar:
            self._bar = tqdm(
                total=total, initial=initial, desc="train", unit="upd", mininterval=1.0
            )

    def _forget_after(self, num_updates: int) -> None:
        """Drop records past ``num_updates`` (left by a run killed after its last checkpoint),
        so the resumed run's curve has each update once."""
        if not self.jsonl.is_file():
            return
        lines = self.jsonl.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = []
        for line in lines:
            try:
                if json.loads(line)["num_updates"] <= num_updates:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by the kill
        if len(kept) != len(lines):
            atomic_write_text(self.jsonl, "".join(kept))

    def record(self, values: dict) -> None:
        """One update's values (a JSON line; averaged into the next ``summary``)."""
        if not self.enabled:
            return
        with open(self.jsonl, "a", encoding="utf-8") as f:
            f.write(json.dumps(values) + "\n")
        for key, value in values.items():
            if isinstance(value, int | float) and key not in ("num_updates", "epoch"):
                self._window[key].append(float(value))
        if self._bar is not None:
            self._bar.update(1)
            post = {"loss": f"{values['loss']:.4g}", "lr": f"{values['lr']:.3g}"}
            if "audio_s_per_s" in values:
                post["audio_s/s"] = f"{values['audio_s_per_s']:.0f}"
            if "gpu_mem_gb" in values:
                post["gpu_GB"] = f"{values['gpu_mem_gb']:.1f}"
            self._bar.set_postfix(post, refresh=False)

    def summary(self, num_updates: int, epoch: int) -> None:
        """Write the means since the last summary to TensorBoard and train.log."""
        if not self.enabled or not self._window:
            return
        means = {k: sum(v) / len(v) for k, v in self._window.items()}
        self._window.clear()
        for key, value in means.items():
            self._writer.add_scalar(f"train/{key}", value, num_updates)
        self._writer.flush()
        fields = " ".join(f"{k}={v:.5g}" for k, v in means.items())
        self.line(f"update {num_updates} epoch {epoch} {fields}")

    def validation(self, num_updates: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.jsonl, "a", encoding="utf-8") as f:
            f.write(json.dumps({"num_updates": num_updates, **values}) + "\n")
        for key, value in values.items():
            self._writer.add_scalar(f"valid/{key.removeprefix('valid_')}", value, num_updates)
        self._writer.flush()
        self.line(f"update {num_updates} " + " ".join(f"{k}={v:.5g}" for k, v in values.items()))

    def line(self, message: str) -> None:
        """A timestamped line in train.log (main process only)."""
        if not self.enabled:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.text, "a", encoding="utf-8") as f:
            f.write(f"{stamp} {message}\n")

    def warning(self, message: str) -> None:
        """Log a warning (every process) and put it in train.log."""
        log.warning(message)
        self.line(f"WARNING {message}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
