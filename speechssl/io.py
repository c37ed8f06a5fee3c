"""Atomic file writes: the one way speechssl writes a file.

Every writer goes to a temp file with a unique name in the target's own folder (so two jobs
writing the same path never share one), flushes and fsyncs it, gives it the mode a plain
``open()`` would (0666 & ~umask, not mkstemp's 0600) and renames it over the target. A reader
sees the old file or the new one, never a part; a writer killed or failing mid-way leaves the
old file and removes its temp file (a SIGKILL leaves a ``.<name>.*.tmp`` that
``remove_stale_temp_files`` clears).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def temp_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh, empty ``.<name>.<random>.tmp`` beside ``path`` (scratch space no other
    job shares); it is removed on exit unless it was renamed away."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path`` for any writer (soundfile, matplotlib, kaldiio, lmplz
    ...); on a clean exit it is fsynced and renamed to ``path``, on an exception removed."""
    with temp_path(path) as tmp:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, content: str) -> Path:
    return atomic_write_bytes(path, content.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, value: Any, indent: int | None = 1) -> Path:
    return atomic_write_text(path, json.dumps(value, indent=indent) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` atomically (load it back with ``weights_only=True``)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def atomic_save_numpy(path: str | os.PathLike, array: Any) -> Path:
    """``np.save`` of one array atomically (no pickle: load with ``allow_pickle=False``)."""
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(array), allow_pickle=False)
    return Path(path)


def remove_stale_temp_files(folder: str | os.PathLike) -> int:
    """Delete the ``.<name>.<random>.tmp`` files that a writer killed mid-way left under
    ``folder`` (recursively); returns how many were removed."""
    removed = 0
    for stale in Path(folder).rglob(".*.tmp"):
        if stale.is_file():
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
                removed += 1
    return removed
