"""Global random number generator states: seed, save to a checkpoint, restore, and fork.

The saved state holds tensors and plain Python values only (numpy's key as a tensor, not an
array), so a checkpoint loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's (CPU and every CUDA device) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng_state() -> dict:
    """The global generators' states: torch CPU, CUDA (current device, if initialized), numpy,
    Python."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None,
        "numpy": {
            "kind": kind,
            "key": torch.from_numpy(key.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(gauss),
        },
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
    }
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``get_rng_state`` returned."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["key"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))


@contextlib.contextmanager
def forked_rng(seed: int) -> Iterator[None]:
    """Run a block with all global generators seeded by ``seed``, restoring them afterwards, so
    the block is reproducible and leaves the caller's random stream untouched."""
    saved = get_rng_state()
    try:
        seed_everything(seed)
        yield
    finally:
        set_rng_state(saved)


class SeededBatchDataset(torch.utils.data.Dataset):
    """Wraps a map-style dataset so each batch of a ``BatchIndices`` sampler is loaded with the
    global generators seeded by the batch's seed: random augmentation inside the dataset then
    depends on (sampler seed, epoch, batch) only, in the main process or any DataLoader worker,
    before or after a resume."""

    def __init__(self, dataset: torch.utils.data.Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index]

    def __getitems__(self, indices: list[int]) -> list:
        load = getattr(self.dataset, "__getitems__", None) or (
            lambda idx: [self.dataset[i] for i in idx]
        )
        seed = getattr(indices, "seed", None)
        if seed is None:
            return load(indices)
        with forked_rng(seed):
            return load(indices)
