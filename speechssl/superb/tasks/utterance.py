"""Utterance-level classification, shared by KS, IC, SID and ER.

The head is SUPERB's: a Linear(D -> 256) projector, mean pooling over the valid frames, and one
Linear to the class logits (s3prl ``UtteranceLevel`` with ``MeanPooling`` and no hidden layer,
so the whole head is linear in the pooled features). Accuracies are in percent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from speechssl.superb.tasks.base import ProbeBatch, Task, read_labels


def mean_pool(features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``(B, T, D)``, ``(B,)`` -> ``(B, D)``: the mean over each utterance's valid frames."""
    mask = torch.arange(features.shape[1], device=features.device)[None, :] < lengths[:, None]
    mask = mask.unsqueeze(-1).to(features.dtype)
    return (features * mask).sum(1) / lengths.clamp(min=1).unsqueeze(-1).to(features.dtype)


class UtteranceLevelHead(nn.Module):
    """``(features (B, T, D), lengths (B,)) -> logits (B, num_outputs)``."""

    def __init__(self, input_dim: int, num_outputs: int, projector_dim: int = 256):
        super().__init__()
        self.projector = nn.Linear(input_dim, projector_dim)
        self.linear = nn.Linear(projector_dim, num_outputs)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.linear(mean_pool(self.projector(features), lengths))


def standard_splits(data: Path, names: dict[str, str]) -> list[dict[str, Path]]:
    """One fold: ``{"train": data / names["train"], ...}``."""
    return [{split: Path(data) / sub for split, sub in names.items()}]


def chance_accuracy(train_labels: Iterable[str], test_labels: list[str], num_classes: int) -> float:
    """Percent: the better of uniform guessing and always answering train's majority class."""
    majority = Counter(train_labels).most_common(1)[0][0]
    share = sum(label == majority for label in test_labels) / max(len(test_labels), 1)
    return 100.0 * max(1.0 / max(num_classes, 1), share)


class UtteranceClassification(Task):
    """One label per utterance from ``label_file`` (``<utt> <label>``) of each split dir.

    Subclasses set ``name``, ``label_file`` and ``split_names`` (split -> path under the corpus
    root).
    """

    metric = "accuracy"
    higher_is_better = True
    default_lr = 1e-4
    label_file: str
    split_names: dict[str, str]

    def __init__(self, projector_dim: int = 256):
        self.projector_dim = projector_dim

    def splits(self, data: Path) -> list[dict[str, Path]]:
        return standard_splits(data, self.split_names)

    def targets(self, split_dir: Path) -> dict[str, str]:
        return read_labels(split_dir, self.label_file)

    def classes(self, train_dir: Path) -> list[str]:
        return sorted(set(self.targets(train_dir).values()))

    def build_head(self, input_dim: int, stride: int, train_dir: Path) -> nn.Module:
        classes = self.classes(train_dir)
        head = UtteranceLevelHead(input_dim, len(classes), self.projector_dim)
        head.classes = classes  # plain attribute: labels in logit order
        return head

    def _label_ids(self, head: nn.Module, batch: ProbeBatch) -> torch.Tensor:
        index = {c: i for i, c in enumerate(head.classes)}
        unknown = [t for t in batch.targets if t not in index]
        if unknown:
            raise ValueError(f"label {unknown[0]!r} is not a training class of {self.name}")
        return torch.tensor([index[t] for t in batch.targets], device=batch.features.device)

    def loss(self, head: nn.Module, batch: ProbeBatch) -> tuple[torch.Tensor, int]:
        logits = head(batch.features, batch.lengths)
        loss = F.cross_entropy(logits, self._label_ids(head, batch), reduction="sum")
        return loss, len(batch.utt_ids)

    @torch.no_grad()
    def evaluate(
        self, head: nn.Module, batches: Iterable[ProbeBatch], split_dir: Path
    ) -> dict[str, float]:
        head.eval()
        correct = total = 0
        for batch in batches:
            predicted = head(batch.features, batch.lengths).argmax(-1).tolist()
            correct += sum(
                head.classes[p] == t for p, t in zip(predicted, batch.targets, strict=True)
            )
            total += len(batch.targets)
        return {self.metric: 100.0 * correct / max(total, 1), "utterances": float(total)}

    def chance(self, train_dir: Path, test_dir: Path) -> float:
        train = list(self.targets(train_dir).values())
        return chance_accuracy(train, list(self.targets(test_dir).values()), len(set(train)))
