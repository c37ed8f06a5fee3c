"""The SUPERB featurizer: a learnable softmax-weighted sum of an upstream's hidden states.

``weights`` start at zero, so the initial mixture is uniform (as s3prl's ``Featurizer``); with
``normalize=True`` every hidden state is layer-normed (no affine) before the sum, which SUPERB
leaves off "to ensure the fidelity of each upstream's extracted representation". ``layer=K``
uses hidden state K alone (no weights), and an upstream with one hidden state (FBANK) passes
through. The weights are trained with the head, by the same optimizer and learning rate.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from speechssl.io import atomic_write_text


class Featurizer(nn.Module):
    """``forward(hidden_states) -> (B, T, D)``.

    Args:
        num_hidden_states: L, the number of hidden states the upstream returns (13 for a
            12-layer wav2vec 2.0: the transformer input, then every layer's output).
        layer: use hidden state ``layer`` only (negative counts from the end); None: weighted sum.
        normalize: layer-norm each hidden state (over D, no affine) before the sum.
    """

    def __init__(self, num_hidden_states: int, layer: int | None = None, normalize: bool = False):
        super().__init__()
        if num_hidden_states < 1:
            raise ValueError(f"num_hidden_states must be >= 1, got {num_hidden_states}")
        if layer is not None and not -num_hidden_states <= layer < num_hidden_states:
            raise ValueError(
                f"layer {layer} does not exist: the upstream has {num_hidden_states} hidden "
                f"states (0..{num_hidden_states - 1}, or negative from the end)"
            )
        self.num_hidden_states = num_hidden_states
        self.layer = None if layer is None else layer % num_hidden_states
        self.normalize = normalize
        self.weighted = layer is None and num_hidden_states > 1
        # zeros -> softmax is uniform at the start (s3prl)
        self.weights = nn.Parameter(torch.zeros(num_hidden_states)) if self.weighted else None

    def forward(self, hidden_states: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """hidden_states: L tensors ``(B, T, D)`` or one ``(L, B, T, D)`` -> ``(B, T, D)``."""
        if len(hidden_states) != self.num_hidden_states:
            raise ValueError(
                f"featurizer built for {self.num_hidden_states} hidden states, got "
                f"{len(hidden_states)} (the upstream or the cached layers changed)"
            )
        if not self.weighted:
            h = hidden_states[self.layer if self.layer is not None else 0]
            return F.layer_norm(h, h.shape[-1:]) if self.normalize else h
        stacked = hidden_states if torch.is_tensor(hidden_states) else torch.stack(hidden_states)
        if self.normalize:
            stacked = F.layer_norm(stacked, stacked.shape[-1:])
        w = self.layer_weights().to(stacked.dtype)
        return torch.einsum("l,lbtd->btd", w, stacked)

    def layer_weights(self) -> torch.Tensor:
        """``(L,)`` the mixture weights (softmax of the parameters; one-hot without a sum)."""
        if self.weights is not None:
            return F.softmax(self.weights, dim=0)
        one_hot = torch.zeros(self.num_hidden_states)
        one_hot[self.layer or 0] = 1.0
        return one_hot

    def save_weights(self, path: str | os.PathLike) -> Path:
        """The layer weights as JSON: ``{"layer_weights": [...], "layer": K or null}``."""
        path = Path(path)
        weights = [round(float(w), 6) for w in self.layer_weights().detach().cpu()]
        info = {"layer_weights": weights, "layer": self.layer, "normalize": self.normalize}
        atomic_write_text(path, json.dumps(info, indent=1) + "\n")
        return path

    def plot_weights(self, path: str | os.PathLike, title: str = "") -> Path:
        """A bar per hidden state (PNG), written atomically."""
        return plot_layer_weights(self.layer_weights().detach().cpu().tolist(), path, title)


def plot_layer_weights(weights: Sequence[float], path: str | os.PathLike, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(max(3.0, 0.4 * len(weights) + 1.5), 2.6))
    ax.bar(range(len(weights)), weights, color="tab:blue")
    ax.axhline(1 / len(weights), color="gray", linestyle=":", linewidth=1, label="uniform")
    ax.set_xlabel("hidden state (0: input)")
    ax.set_ylabel("weight")
    ax.set_xticks(range(len(weights)))
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    from speechssl.superb.report import save_figure

    return save_figure(fig, path)
