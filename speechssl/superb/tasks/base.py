"""The SUPERB task interface: what a probing task defines (labels, head, loss, metrics).

The runner (:mod:`speechssl.superb.runner`) owns everything else: data loading, the cache of
upstream hidden states, the featurizer, optimisation, the learning-rate sweep, seeds, dev-based
model selection and the report. A task sees the featurizer output as a :class:`ProbeBatch`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass
class ProbeBatch:
    utt_ids: list[str]
    features: torch.Tensor  # (B, T, D) featurizer output (weighted sum of hidden states)
    lengths: torch.Tensor  # (B,) valid frames of `features`
    stride: int  # input samples per feature frame (160 fbank, 320 wav2vec2)
    targets: list  # task.targets(split_dir)[utt] for each utt, in batch order
    wavs: torch.Tensor | None = None  # (B, S) input audio, only if task.needs_audio
    wav_lengths: torch.Tensor | None = None  # (B,)


class Task:
    """One SUPERB task. Subclasses set the class attributes and implement the methods."""

    name: str  # "pr" "ks" "ic" "sid" "er" "asr" "se" "sv"
    metric: str  # main metric key, e.g. "accuracy", "per", "wer", "eer", "pesq"
    higher_is_better: bool
    needs_audio: bool = False  # SE: the runner puts wavs (noisy) in the ProbeBatch
    default_lr: float  # the protocol's lr (the sweep centres on it)
    max_train_seconds: float | None = None  # random crop of training utterances; None: whole
    # Optional protocol settings the runner reads (defaults: the common SUPERB values)
    optimizer: str = "adam"  # "adam" or "adamw" (SE, SV)
    weight_decay: float = 0.01  # AdamW only (SE: 0, s3prl's own AdamW; SV: torch's default)
    grad_clip: float = 1.0  # max gradient norm (SV: 1e3)
    batch_size: int = 32  # utterances per update (the protocol's effective batch)
    default_steps: int = 200_000  # optimizer updates in the protocol
    balanced_sampling: bool = False  # KS: class-balanced WeightedRandomSampler on train

    def splits(self, data: Path) -> list[dict[str, Path]]:
        """One ``{"train", "dev", "test"}`` dict of data dirs per fold (a single one except
        ER with folds). ``data`` is the corpus root as the synthetic corpus lays it out."""
        raise NotImplementedError

    def targets(self, split_dir: Path) -> dict[str, Any]:
        """utt -> target, read from the label files of ``split_dir``."""
        raise NotImplementedError

    def build_head(self, input_dim: int, stride: int, train_dir: Path) -> nn.Module:
        raise NotImplementedError

    def loss(self, head: nn.Module, batch: ProbeBatch) -> tuple[torch.Tensor, int]:
        """(sum of per-unit losses, number of units); the runner divides."""
        raise NotImplementedError

    def evaluate(
        self, head: nn.Module, batches: Iterable[ProbeBatch], split_dir: Path
    ) -> dict[str, float]:
        """Head in eval mode, no grad; all metrics, the main one under ``self.metric``."""
        raise NotImplementedError

    def chance(self, train_dir: Path, test_dir: Path) -> float:
        """The main metric at chance level."""
        raise NotImplementedError

    def tune(self, head: nn.Module, batches: Iterable[ProbeBatch]) -> dict[str, Any]:
        """After training, with the best-dev checkpoint loaded: tune decoding settings on dev
        (``batches``) and keep them on ``head`` for the final dev and test evaluations; returns
        them for the run's ``result.json`` (ASR: the LM weights). Default: nothing to tune."""
        return {}


def read_labels(split_dir: Path, name: str) -> dict[str, str]:
    """``split_dir/name`` (e.g. ``utt2keyword``) for every utterance of ``split_dir/wav.scp``
    (or ``segments``); an error names the file and the first utterance without a label."""
    from speechssl.data.kaldi import DataDir, DataDirError, read_table

    path = Path(split_dir) / name
    if not path.is_file():
        raise DataDirError(f"{path}: label file not found (the task reads {name} of each split)")
    table = read_table(path, allow_empty_value=False)
    utts = DataDir.load(split_dir).utt_ids
    missing = [u for u in utts if u not in table]
    if missing:
        raise DataDirError(
            f"{path}: no label for {len(missing)} of {len(utts)} utterances, e.g. "
            f"'{missing[0]}'; fix the file or subset the data dir"
        )
    return {u: table[u] for u in utts}
