"""On a terminal the recipes keep a quiet step visibly alive: recipes/lib/common.sh's run_logged
and run_jobs redraw one status line (elapsed time, the log's last line) while their commands
run. Off a terminal they add nothing, and the command's output and exit status are kept either way.
The terminal is a real pseudo-terminal (Python's pty), read as a user's screen would be."""

from __future__ import annotations

import os
import pty
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMON = ROOT / "recipes/lib/common.sh"
# prints a line, stays quiet for 2.5 s, prints another, fails with 3
QUIET_STEP = "echo step one; sleep 2.5; echo step two; exit 3"


def _on_terminal(script: str) -> tuple[int, str]:
    main, sub = pty.openpty()
    proc = subprocess.Popen(
        ["bash", "-c", script],
        stdin=sub,
        stdout=sub,
        stderr=sub,
        env={**os.environ, "COLUMNS": "200"},
    )
    os.close(sub)
    screen = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        screen += chunk
    os.close(main)
    return proc.wait(timeout=60), screen.decode(errors="replace")


def _redraws(screen: str) -> list[str]:
    return [part.replace("\x1b[K", "") for part in screen.split("\r") if "\x1b[K" in part]


def test_run_logged_redraws_elapsed_time_and_the_log_on_a_terminal(tmp_path: Path):
    log = tmp_path / "step.log"
    rc, screen = _on_terminal(
        f". {COMMON}; run_logged {log} bash -c '{QUIET_STEP}'; echo \"rc=$?\""
    )
    assert rc == 0 and "rc=3" in screen, screen
    assert log.read_text() == "step one\nstep two\n"
    draws = [d for d in _redraws(screen) if d.startswith("step.log: ")]
    # one redraw a second: during the 2.5 s of silence the elapsed time moved on
    seconds = {re.search(r"0m(\d+)s", d).group(1) for d in draws}
    assert len(seconds) >= 2, draws
    assert any(d.endswith("| step one") for d in draws), draws


def test_run_logged_status_shows_another_files_last_line(tmp_path: Path):
    """--status FILE: a command that logs its progress elsewhere (asr-train's train.log) shows
    that file's last line, not its quiet stdout's."""
    log, status = tmp_path / "train.out", tmp_path / "train.log"
    step = f"echo started; echo update 50 loss=1.5 >> {status}; sleep 2.5; exit 0"
    rc, screen = _on_terminal(
        f". {COMMON}; run_logged --status {status} {log} bash -c '{step}'; echo \"rc=$?\""
    )
    assert rc == 0 and "rc=0" in screen, screen
    draws = [d for d in _redraws(screen) if d.startswith("train.out: ")]
    assert any(d.endswith("| update 50 loss=1.5") for d in draws), draws
    assert log.read_text() == "started\n"


def test_run_logged_off_a_terminal_is_the_plain_redirect(tmp_path: Path):
    log = tmp_path / "step.log"
    proc = subprocess.run(
        ["bash", "-c", f". {COMMON}; run_logged {log} bash -c '{QUIET_STEP}'"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 3
    assert proc.stdout == "" and "\r" not in proc.stderr and "step.log" not in proc.stderr
    assert log.read_text() == "step one\nstep two\n"


def test_run_jobs_shows_jobs_done_and_each_running_job_on_a_terminal(tmp_path: Path):
    logs = tmp_path / "job.JOB.log"
    rc, screen = _on_terminal(
        f". {COMMON}; run_jobs --max-parallel 2 JOB=1:2 {logs} "
        "bash -c 'echo working on JOB; sleep 2.5'; echo \"rc=$?\""
    )
    assert rc == 0 and "rc=0" in screen, screen
    draws = [d for d in _redraws(screen) if d.startswith("jobs ")]
    assert any(d.startswith("jobs 0/2 done") for d in draws), draws
    assert any("| working on 1" in d and "| working on 2" in d for d in draws), draws
