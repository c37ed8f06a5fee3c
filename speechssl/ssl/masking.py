"""Span masking for masked prediction (wav2vec 2.0 §3.1, HuBERT, data2vec).

The procedure of fairseq's ``compute_mask_indices`` (static span lengths, overlap allowed):
for an utterance of ``n`` valid frames, ``num = max(min_masks, int(mask_prob * n / mask_length
+ u))`` span starts (u ~ U[0, 1): probabilistic rounding) are drawn without replacement from
``range(n - mask_length)``, each masks ``mask_length`` frames, and spans may overlap, so
p = 0.65, M = 10 masks about 49% of the frames. Padded frames are never masked. With
``require_same_masks`` every row is randomly un-masked down to the smallest count in the batch,
so masked frames reshape to ``(B, T_m, ...)``.

All randomness comes from a generator passed in (numpy ``Generator`` or ``torch.Generator``),
never a global RNG, so a resumed run draws the same masks.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch


def _numpy_rng(rng: np.random.Generator | torch.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, torch.Generator):
        # one draw from the torch generator seeds this call: deterministic given its state
        seed = int(torch.randint(0, 2**62, (1,), generator=rng, device=rng.device))
        return np.random.default_rng(seed)
    if isinstance(rng, int):
        return np.random.default_rng(rng)
    raise TypeError(
        "masking needs an explicit generator (numpy Generator, torch.Generator or int seed) "
        "so that runs are reproducible"
    )


def compute_mask_indices(
    lengths: torch.Tensor | np.ndarray | list[int],
    max_len: int,
    mask_prob: float,
    mask_length: int,
    rng: np.random.Generator | torch.Generator | int,
    min_masks: int = 2,
    require_same_masks: bool = True,
    mask_dropout: float = 0.0,
) -> torch.Tensor:
    """Span mask of a batch.

    Args:
        lengths: ``(B,)`` valid frames per utterance; frames ``>= lengths[b]`` are padding.
        max_len: T, the padded length.
        mask_prob: fraction of frames that start a span, times ``mask_length`` (0.65 in BASE).
        mask_length: span length M.
        rng: generator for every random draw.
        min_masks: least number of spans per utterance.
        require_same_masks: un-mask rows down to the batch minimum count.
        mask_dropout: fraction of each row's masked frames randomly un-masked (``rint(n · p)``
            of its n, after the rows are equalised, as fairseq).
    Returns:
        ``(B, T)`` bool tensor (CPU), True = masked.
    """
    gen = _numpy_rng(rng)
    sizes = [int(n) for n in (lengths.tolist() if hasattr(lengths, "tolist") else lengths)]
    rows: list[np.ndarray] = []
    for size in sizes:
        if size > max_len:
            raise ValueError(f"length {size} exceeds the padded length {max_len}")
        if size <= 0 or mask_prob <= 0:
            rows.append(np.zeros(0, dtype=np.int64))
            continue
        num = max(min_masks, int(mask_prob * size / float(mask_length) + gen.random()))
        num = min(num, size)
        span = mask_length
        if size - span <= num:
            span = max(size - num - 1, 1)
        starts = gen.choice(max(size - span, num), num, replace=False)
        idx = (starts[:, None] + np.arange(mask_length)[None, :]).reshape(-1)
        rows.append(np.unique(idx[idx < size]))
    mask = np.zeros((len(sizes), max_len), dtype=bool)
    # empty utterances (no valid frames) do not pull every row down to zero
    fewest = min((len(r) for r, n in zip(rows, sizes) if n > 0), default=0)
    for b, idx in enumerate(rows):
        if require_same_masks and len(idx) > fewest:
            idx = gen.choice(idx, fewest, replace=False)
        if mask_dropout > 0 and len(idx):  # after equalising, as fairseq: rint(n * p) holes
            holes = int(np.rint(len(idx) * mask_dropout))
            idx = gen.choice(idx, len(idx) - holes, replace=False)
        mask[b, idx] = True
    return torch.from_numpy(mask)


def masked_frame_index(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of the masked frames of each row, left-aligned.

    mask: ``(B, T)`` bool. Returns ``(B, T_m)`` long frame indices (T_m = most masked frames in
    a row; rows with fewer are padded with index 0) and ``(B, T_m)`` bool validity. Valid
    entries are in ascending frame order, i.e. ``x[mask]`` order.
    """
    b, t = mask.shape
    counts = mask.sum(1)
    t_m = int(counts.max()) if b else 0
    pos = torch.arange(t, device=mask.device).expand(b, t)
    order = torch.where(mask, pos, pos + t).argsort(dim=1)[:, :t_m]
    valid = torch.arange(t_m, device=mask.device)[None, :] < counts[:, None]
    return torch.where(valid, order, torch.zeros_like(order)), valid


class StepGenerators:
    """Mixin for a pretraining ``nn.Module`` with ``cfg.seed``: the Trainer's
    ``set_num_updates`` hook and ``_generator(batch)``, a fresh :func:`step_generator` per
    micro-batch keyed by the batch's utterance ids. Masks and negatives then depend on (seed,
    update, which utterances) only, not on which process or micro-batch slot holds them: a
    resumed run draws the same ones, and N DDP ranks draw what one process with
    ``grad_accum`` N draws for the same batches."""

    num_updates = 0
    _micro_batch = 0

    def set_num_updates(self, num_updates: int) -> None:
        self.num_updates = num_updates
        self._micro_batch = 0

    def _generator(self, batch: Any = None) -> torch.Generator:
        ids = getattr(batch, "utt_ids", None)
        if ids:
            key = "\n".join(ids)
        else:  # no utterance ids: the micro-batch slot and the rank
            rank = 0
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                rank = torch.distributed.get_rank()
            key = f"slot {self._micro_batch} rank {rank}"
        self._micro_batch += 1
        return step_generator(self.cfg.seed, self.num_updates, key, self.training)


def step_generator(seed: int, num_updates: int, key: str, training: bool) -> torch.Generator:
    """Generator seeded by ``(seed, update, key, train/eval)`` (``key``: e.g. the batch's
    utterance ids); a resumed run draws the same masks (the scheme of wav2vec2's pretraining)."""
    text = f"{seed}/{num_updates}/{training}/{key}".encode()
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
