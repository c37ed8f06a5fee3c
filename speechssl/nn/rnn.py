"""A bidirectional LSTM over padded batches that is fast to train on CPU.

``nn.LSTM`` fed a ``PackedSequence`` is the usual way to keep padding out of the backward
direction, but on CPU its backward pass re-batches every time step: measured on 2 cores
(batch 16, 150-250 frames, 2 layers of 64 units) it took 1.16 s against 0.06 s for the same
LSTM on the padded tensor. :class:`BiLSTM` keeps ``nn.LSTM``'s parameters (and state-dict
keys) and computes each direction on the padded tensor; the reverse direction runs on each
utterance reversed within its own length, so the padding comes after the valid frames in both
directions and never reaches them. The outputs equal the packed ones (zeros past each length),
gradients included (``tests/test_nn_rnn.py``). On CUDA the packed cuDNN kernel is used.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from speechssl.nn.conv_encoder import length_mask


def reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``x (B, T, D)`` with frames ``0 .. length-1`` of each row reversed; the padding stays
    where it is. Its own inverse."""
    steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    lengths = lengths.to(x.device).unsqueeze(1)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


class BiLSTM(nn.LSTM):
    """``nn.LSTM(input_size, hidden_size, num_layers, dropout=dropout, bidirectional=True,
    batch_first=True)`` called as ``forward(x (B, T, D), lengths (B,)) -> (B, T, 2H)`` with the
    outputs of a packed sequence: padding never enters the valid frames, outputs past each
    length are 0. No initial state, no ``proj_size``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0):
        super().__init__(
            input_size, hidden_size, num_layers=num_layers, dropout=dropout, bidirectional=True,
            batch_first=True,
        )  # fmt: skip

    def _direction(self, x: torch.Tensor, layer: int, suffix: str) -> torch.Tensor:
        params = [getattr(self, f"{name}_l{layer}{suffix}")
                  for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]  # fmt: skip
        zeros = x.new_zeros(1, x.shape[0], self.hidden_size)
        # one layer, one direction: the op nn.LSTM itself runs (dropout is applied below)
        out, _, _ = torch.lstm(x, [zeros, zeros], params, True, 1, 0.0, self.training, False, True)
        return out

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        total = x.shape[1]
        if x.is_cuda:
            packed = nn.utils.rnn.pack_padded_sequence(
                x, lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            out, _ = super().forward(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=total)
            return out
        lengths = lengths.to(x.device)
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0:
                x = F.dropout(x, self.dropout, self.training)
            forward = self._direction(x, layer, "")
            backward = self._direction(reverse_within_lengths(x, lengths), layer, "_reverse")
            x = torch.cat([forward, reverse_within_lengths(backward, lengths)], dim=-1)
        return x * length_mask(lengths, total).unsqueeze(-1).to(x.dtype)
