"""speechssl.io: every writer leaves the old file or the new one, never a part of either.

Files are read back with plain ``open``/``json``/``numpy``/``torch`` (not through speechssl), and
the concurrency test runs real processes against one path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from speechssl.io import (
    atomic_path,
    atomic_save_numpy,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temp_files,
)

REPO = Path(__file__).resolve().parents[1]


def _temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_each_writer_round_trips_through_plain_readers(tmp_path):
    atomic_write_text(tmp_path / "a" / "t.txt", "héllo\nworld\n")
    assert open(tmp_path / "a" / "t.txt", encoding="utf-8").read() == "héllo\nworld\n"
    atomic_write_json(tmp_path / "v.json", {"x": [1, 2.5], "y": None})
    assert json.load(open(tmp_path / "v.json")) == {"x": [1, 2.5], "y": None}
    atomic_save_numpy(tmp_path / "c.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(
        np.load(tmp_path / "c.npy", allow_pickle=False), [[0, 1, 2], [3, 4, 5]]
    )
    atomic_torch_save({"w": torch.ones(3), "n": 4}, tmp_path / "m.pt")
    loaded = torch.load(tmp_path / "m.pt", weights_only=True)
    assert loaded["n"] == 4 and torch.equal(loaded["w"], torch.ones(3))
    assert _temp_files(tmp_path) == [] and _temp_files(tmp_path / "a") == []


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_files_get_the_mode_a_plain_open_would(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
        with open(tmp_path / "g.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == mode
    assert (tmp_path / "g.txt").stat().st_mode & 0o777 == mode


def test_a_failing_writer_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old\n")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_path(target) as tmp:
            tmp.write_text("new but half")
            raise RuntimeError("disk on fire")
    assert target.read_text() == "old\n"
    assert _temp_files(tmp_path) == []


def test_remove_stale_temp_files_clears_what_a_killed_writer_left(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".wav.scp.abc123.tmp").write_text("partial")
    (tmp_path / ".x.npy.zz.tmp").write_text("partial")
    (tmp_path / "keep.txt").write_text("kept")
    assert remove_stale_temp_files(tmp_path) == 2
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["keep.txt"]


WRITER = textwrap.dedent(
    """
    import sys
    from speechssl.io import atomic_write_text
    path, letter, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    body = letter * 400_000  # large enough that one write() call cannot be atomic by luck
    for k in range(rounds):
        atomic_write_text(path, f"{letter}{k:06d}\\n{body}\\nend\\n")
    """
)


def test_concurrent_writers_of_one_path_never_leave_a_partial_or_mixed_file(tmp_path):
    """Four processes rewrite one file 40 times each while this process keeps reading it: every
    read is one writer's whole file (same letter throughout, header to trailer)."""
    target = tmp_path / "shared.txt"
    target.write_text("seed\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(target), letter, "40"], env=env)
        for letter in "abcd"
    ]
    seen, reads = set(), 0
    while any(w.poll() is None for w in writers) or reads < 20:
        content = target.read_text()
        reads += 1
        if content == "seed\n":
            continue
        head, body, trailer = content.split("\n")[:3]
        letter = head[0]
        assert body == letter * 400_000, f"mixed or partial file on read {reads}"
        assert trailer == "end" and content.endswith("end\n") and len(content) == 400_013
        seen.add(letter)
        time.sleep(0.001)
    assert all(w.wait() == 0 for w in writers)
    assert seen, "the reader never saw a writer's file"
    assert _temp_files(tmp_path) == []
    final = target.read_text()
    assert final.endswith("end\n") and final[8:] == final[0] * 400_000 + "\nend\n"
