"""What the Trainer needs from a model: ``forward(batch) -> ModelOutput``, and two optional hooks.

The loss is a SUM over units (masked frames, utterances, tokens ...) and ``sample_size`` counts
them; the Trainer divides the gradients by the total ``sample_size`` over all gradient-accumulation
micro-batches and all processes, so accumulating k micro-batches, or splitting a batch over k
processes, gives the same update as one big batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:
    from speechssl.data.dataset import AudioBatch


@dataclass
class ModelOutput:
    """loss: scalar, the SUM of the per-unit losses of this (micro-)batch.
    sample_size: how many units the loss sums over.
    stats: detached scalars for logging only (e.g. ``{"accuracy": ..., "code_ppl": ...}``);
    the Trainer logs their mean over micro-batches and processes."""

    loss: torch.Tensor
    sample_size: int | torch.Tensor
    stats: dict[str, float | torch.Tensor] = field(default_factory=dict)


@runtime_checkable
class TrainableModel(Protocol):
    """A model the Trainer can train. Optional hooks, called when the model defines them:

    ``set_num_updates(num_updates)``: before the forward passes of each optimizer step (Gumbel
    temperature, EMA decay, mask schedules ...); ``num_updates`` steps are done so far.
    ``after_optimizer_step(num_updates)``: after each optimizer step (e.g. data2vec's EMA teacher
    update); ``num_updates`` counts that step.
    """

    def forward(self, batch: AudioBatch) -> ModelOutput: ...
