"""Training checkpoints: one file each, written atomically, loaded with ``weights_only=True``.

Layout under ``<exp_dir>/checkpoints/``: ``ckpt-<num_updates>.pt`` (the newest ``keep_last``
kept) and ``last.pt``, a hard link to (or, where links are not supported, a copy of) the newest.
A checkpoint is a dict::

    {"format": "speechssl-checkpoint-v1", "config": {...plain dict...}, "model": state_dict,
     "optimizer": ..., "scheduler": ..., "scaler": None, "rng": {...}, "sampler": {...},
     "num_updates": int, "epoch": int}
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import shutil
import zipfile
from pathlib import Path

import torch

from speechssl.errors import SpeechSSLError
from speechssl.io import atomic_path, atomic_torch_save

CHECKPOINT_FORMAT = "speechssl-checkpoint-v1"
LAST = "last.pt"
_NUMBERED = re.compile(r"^ckpt-(\d+)\.pt$")

log = logging.getLogger("speechssl.train")


class CheckpointError(SpeechSSLError, RuntimeError):
    """A checkpoint cannot be read or is not what was expected; the message names the file."""


def checkpoint_dir(exp_dir: str | os.PathLike) -> Path:
    return Path(exp_dir) / "checkpoints"


def numbered_checkpoints(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(num_updates, path)`` of the ``ckpt-<n>.pt`` files in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NUMBERED.match(p.name))]
    return sorted(found)


def check_plain(value: object, where: str = "config") -> None:
    """Raise TypeError naming the entry of ``value`` that ``weights_only`` loading would refuse
    (anything but dicts, lists, tuples, str, int, float, bool, None and tensors)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str | int):
                raise TypeError(f"{where}: key {key!r} is not a str or int")
            check_plain(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for k, item in enumerate(value):
            check_plain(item, f"{where}[{k}]")
    elif not (value is None or isinstance(value, str | int | float | bool | torch.Tensor)):
        raise TypeError(
            f"{where}: {type(value).__name__} cannot go into a checkpoint (loading uses "
            "weights_only=True); convert it to plain values (dataclasses.asdict, str(path), list)"
        )


def save_checkpoint(state: dict, folder: str | os.PathLike, keep_last: int | None = None) -> Path:
    """Write ``state`` as ``folder/ckpt-<state["num_updates"]>.pt``, point ``last.pt`` at it and
    delete all but the newest ``keep_last`` numbered checkpoints. Returns the new file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {"format": CHECKPOINT_FORMAT, **state}
    path = folder / f"ckpt-{int(state['num_updates'])}.pt"
    atomic_torch_save(state, path)
    with atomic_path(folder / LAST) as tmp:
        _link_or_copy(path, tmp)
    if keep_last is not None:
        for _, old in numbered_checkpoints(folder)[:-keep_last]:
            old.unlink(missing_ok=True)
    return path


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink()
    try:
        os.link(src, dst)
    except OSError:  # file systems without hard links
        shutil.copyfile(src, dst)


def load_checkpoint(path: str | os.PathLike, expect_format: str | None = CHECKPOINT_FORMAT) -> dict:
    """Load a checkpoint on the CPU with ``weights_only=True`` (no code runs from the file).

    Raises CheckpointError naming the file when it is missing, truncated, corrupt, or (with
    ``expect_format``) not of that format; pass ``expect_format=None`` for other files.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Weights only load failed" in str(e):
            raise CheckpointError(
                f"{path}: holds objects that weights_only loading refuses to unpickle ({reason}); "
                "it was not written by the speechssl Trainer. Re-save it with tensors and plain "
                "Python values only"
            ) from None
        older = [p.name for _, p in numbered_checkpoints(path.parent) if p.name != path.name]
        hint = f"; the previous checkpoints here are {', '.join(older[-3:])}" if older else ""
        raise CheckpointError(
            f"{path}: cannot read checkpoint ({reason}). The file is truncated or corrupt (e.g. "
            f"a copy or a disk that ran out of space): delete it and resume from the previous "
            f"ckpt-<step>.pt (resume does that by itself when last.pt is unreadable){hint}"
        ) from None
    if expect_format is not None:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        if found != expect_format:
            raise CheckpointError(
                f"{path}: not a {expect_format} file (format: {found!r}); pass a checkpoint "
                "written by the speechssl Trainer"
            )
    return state


def load_latest_checkpoint(folder: str | os.PathLike) -> tuple[Path, dict] | None:
    """The newest readable checkpoint in ``folder``: ``last.pt``, else the numbered ones newest
    first (warning about each unreadable one). None when there is no checkpoint at all."""
    folder = Path(folder)
    candidates = [folder / LAST] if (folder / LAST).is_file() else []
    candidates += [p for _, p in reversed(numbered_checkpoints(folder))]
    errors = []
    for path in candidates:
        try:
            return path, load_checkpoint(path)
        except CheckpointError as e:
            errors.append(str(e))
            log.warning("%s; trying an older checkpoint", e)
    if errors:
        raise CheckpointError(
            f"{folder}: no readable checkpoint ({len(errors)} tried); delete the folder to start "
            "over. First error: " + errors[0]
        )
    return None
