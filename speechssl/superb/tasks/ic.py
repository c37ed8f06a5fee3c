"""IC, intent classification (Fluent Speech Commands: action, object, location).

Labels: ``intents/{train,dev,test}/utt2intent`` with three words, ``action object location``.
Head: Linear(D -> 256), mean pooling, one Linear emitting the concatenated logits of the three
slots; loss: the sum of the three cross-entropies; Adam 1e-4. An utterance is correct only if
all three slots are (s3prl: ``(pred == label).prod(1)``). Accuracies in percent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from speechssl.superb.tasks.base import ProbeBatch, Task, read_labels
from speechssl.superb.tasks.utterance import UtteranceLevelHead, standard_splits

SLOTS = ("action", "object", "location")


class IntentClassification(Task):
    name = "ic"
    metric = "accuracy"
    higher_is_better = True
    default_lr = 1e-4
    default_steps = 200_000
    split_names = {"train": "intents/train", "dev": "intents/dev", "test": "intents/test"}

    def __init__(self, projector_dim: int = 256):
        self.projector_dim = projector_dim

    def splits(self, data: Path) -> list[dict[str, Path]]:
        return standard_splits(data, self.split_names)

    def targets(self, split_dir: Path) -> dict[str, tuple[str, str, str]]:
        table = read_labels(split_dir, "utt2intent")
        targets = {}
        for utt, value in table.items():
            slots = value.split()
            if len(slots) != len(SLOTS):
                raise ValueError(
                    f"{Path(split_dir) / 'utt2intent'}: '{utt}' has {value!r}; expected three "
                    "words 'action object location' (use 'none' for an empty slot)"
                )
            targets[utt] = tuple(slots)
        return targets

    def slot_values(self, train_dir: Path) -> list[list[str]]:
        targets = list(self.targets(train_dir).values())
        return [sorted({t[k] for t in targets}) for k in range(len(SLOTS))]

    def build_head(self, input_dim: int, stride: int, train_dir: Path) -> nn.Module:
        values = self.slot_values(train_dir)
        head = UtteranceLevelHead(input_dim, sum(len(v) for v in values), self.projector_dim)
        head.slot_values = values
        return head

    def _split_logits(self, head: nn.Module, logits: torch.Tensor) -> list[torch.Tensor]:
        return list(logits.split([len(v) for v in head.slot_values], dim=-1))

    def loss(self, head: nn.Module, batch: ProbeBatch) -> tuple[torch.Tensor, int]:
        logits = self._split_logits(head, head(batch.features, batch.lengths))
        total = batch.features.new_zeros(())
        for k, (slot_logits, values) in enumerate(zip(logits, head.slot_values, strict=True)):
            index = {v: i for i, v in enumerate(values)}
            labels = torch.tensor([index[t[k]] for t in batch.targets], device=total.device)
            total = total + F.cross_entropy(slot_logits, labels, reduction="sum")
        return total, len(batch.utt_ids)

    @torch.no_grad()
    def evaluate(
        self, head: nn.Module, batches: Iterable[ProbeBatch], split_dir: Path
    ) -> dict[str, float]:
        head.eval()
        slot_correct = [0] * len(SLOTS)
        all_correct = total = 0
        for batch in batches:
            logits = self._split_logits(head, head(batch.features, batch.lengths))
            predicted = [
                [values[i] for i in slot.argmax(-1).tolist()]
                for slot, values in zip(logits, head.slot_values, strict=True)
            ]
            for b, target in enumerate(batch.targets):
                right = [predicted[k][b] == target[k] for k in range(len(SLOTS))]
                slot_correct = [c + r for c, r in zip(slot_correct, right, strict=True)]
                all_correct += all(right)
                total += 1
        metrics = {self.metric: 100.0 * all_correct / max(total, 1), "utterances": float(total)}
        for slot, c in zip(SLOTS, slot_correct, strict=True):
            metrics[f"{slot}_accuracy"] = 100.0 * c / max(total, 1)
        return metrics

    def chance(self, train_dir: Path, test_dir: Path) -> float:
        """Percent: the product over slots of the better of uniform guessing and train's
        majority value (its share on test)."""
        train = list(self.targets(train_dir).values())
        test = list(self.targets(test_dir).values())
        product = 1.0
        for k in range(len(SLOTS)):
            values = Counter(t[k] for t in train)
            majority = values.most_common(1)[0][0]
            share = sum(t[k] == majority for t in test) / max(len(test), 1)
            product *= max(1.0 / len(values), share)
        return 100.0 * product
