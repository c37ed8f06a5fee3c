"""recipes/lib: parse_options.sh and common.sh, driven through bash scripts written to tmp_path."""

import os
import re
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "recipes" / "lib"

OPTIONS = """\
stage=1          # first stage to run
stop_stage=100   # last stage to run
use_gpu=false    # run on a GPU
test_sets="dev test"
nj=4
help_message="Usage: $0 [options] <data-dir>"
"""


def _run(tmp_path: Path, body: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    """Writes `body` after a recipe header to tmp_path/recipe.sh and runs it with `args`."""
    script = tmp_path / "recipe.sh"
    script.write_text(
        "#!/usr/bin/env bash\nset -euo pipefail\n"
        + OPTIONS
        + f". {LIB / 'parse_options.sh'}\n. {LIB / 'common.sh'}\n"
        + textwrap.dedent(body)
    )
    return subprocess.run(
        ["bash", str(script), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


PRINT_OPTIONS = 'echo "stage=$stage stop_stage=$stop_stage use_gpu=$use_gpu nj=$nj rest=$*"\n'


# parse_options.sh


@pytest.mark.parametrize(
    "args",
    [
        ["--stop-stage", "3"],
        ["--stop_stage", "3"],
        ["--stop-stage=3"],
        ["--stop_stage=3"],
    ],
)
def test_option_spellings_are_equivalent(tmp_path, args):
    out = _run(tmp_path, PRINT_OPTIONS, *args)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "stage=1 stop_stage=3 use_gpu=false nj=4 rest=\n"


def test_values_are_assigned_not_evaluated(tmp_path):
    out = _run(tmp_path, 'printf "%s\\n" "$test_sets"\n', "--test-sets", "$(touch pwned) a b")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "$(touch pwned) a b\n"
    assert not (tmp_path / "pwned").exists()


def test_parsing_stops_at_first_positional(tmp_path):
    out = _run(tmp_path, PRINT_OPTIONS, "--nj", "2", "data/train", "--stage", "5")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "stage=1 stop_stage=100 use_gpu=false nj=2 rest=data/train --stage 5\n"


@pytest.mark.parametrize("option", ["--max-epoch", "--config", "--BASHPID", "--_po_name", "--a[0]"])
def test_unknown_option_is_rejected(tmp_path, option):
    out = _run(tmp_path, PRINT_OPTIONS, option, "1")
    assert out.returncode == 1
    assert out.stdout == ""
    assert f"invalid option {option}" in out.stderr
    assert "--stage" not in out.stderr  # names the bad option, lists nothing else


def test_missing_value_is_rejected(tmp_path):
    out = _run(tmp_path, PRINT_OPTIONS, "--nj")
    assert out.returncode == 1
    assert "--nj needs a value" in out.stderr


def test_boolean_option_accepts_only_true_or_false(tmp_path):
    out = _run(tmp_path, PRINT_OPTIONS, "--use-gpu", "true")
    assert out.returncode == 0, out.stderr
    assert "use_gpu=true" in out.stdout
    out = _run(tmp_path, PRINT_OPTIONS, "--use-gpu", "yes")
    assert out.returncode == 1
    assert "--use-gpu takes true or false, got 'yes'" in out.stderr


def test_help_lists_options_with_values(tmp_path):
    out = _run(tmp_path, PRINT_OPTIONS, "--nj", "8", "--help")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"Usage: {tmp_path / 'recipe.sh'} [options] <data-dir>"
    options = [line.split()[0] for line in lines if line.startswith("  --")]
    assert options == ["--stage", "--stop_stage", "--use_gpu", "--test_sets", "--nj"]
    assert re.search(r"^  --stage 1 +# first stage to run$", out.stdout, re.M)
    assert '  --test_sets "dev test"' in lines
    assert "  --nj 8" in lines  # current value, after the options before --help
    assert "stage=" not in out.stdout  # exited before the recipe body
    assert _run(tmp_path, PRINT_OPTIONS, "-h").stdout == out.stdout.replace("--nj 8", "--nj 4")


# common.sh: log, die, stage_on, markers, atomic folders, require_*


def test_log_line_names_time_and_place(tmp_path):
    body = """\
    log "hello" "world"
    stage_two() { log "in a function"; }
    stage_two
    die "bad thing"
    """
    out = _run(tmp_path, body)
    assert out.returncode == 1
    stamp = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}"
    lines = out.stderr.splitlines()
    assert re.fullmatch(stamp + r" \(recipe\.sh:11:main\) hello world", lines[0])
    assert re.fullmatch(stamp + r" \(recipe\.sh:12:stage_two\) in a function", lines[1])
    assert re.fullmatch(stamp + r" \(recipe\.sh:14:main\) ERROR: bad thing", lines[2])


def test_stage_on_gates_stages(tmp_path):
    body = "for n in 0 1 2 3 4 5; do if stage_on $n; then echo -n $n; fi; done\n"
    assert _run(tmp_path, body).stdout == "12345"
    assert _run(tmp_path, body, "--stage", "2", "--stop-stage", "3").stdout == "23"
    assert _run(tmp_path, body, "--stage", "08", "--stop-stage", "09").stdout == ""
    out = _run(tmp_path, body, "--stage", "a[$(touch pwned)]")
    assert out.returncode == 1
    assert "$stage must be an integer" in out.stderr
    assert not (tmp_path / "pwned").exists()


def test_mark_done_is_atomic(tmp_path):
    body = """\
    marker=exp/feats/.features.done
    if is_done "$marker"; then echo "done before"; fi
    mark_done "$marker" "nj=$nj"
    if is_done "$marker"; then echo "done after"; fi
    ls -A exp/feats
    """
    out = _run(tmp_path, body)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "done after\n.features.done\n"  # no temp file left behind
    content = (tmp_path / "exp/feats/.features.done").read_text()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2} nj=4\n", content)


def test_mark_done_never_writes_the_marker_in_place(tmp_path):
    # The marker appears by rename: its inode differs from any file mark_done wrote into.
    body = """\
    mkdir -p d && mark_done d/.x.done && stat -c %i d/.x.done
    mark_done d/.x.done again && stat -c %i d/.x.done && cat d/.x.done
    """
    out = _run(tmp_path, body)
    assert out.returncode == 0, out.stderr
    first, second, content = out.stdout.splitlines()
    assert first != second
    assert content.endswith(" again")


def test_atomic_dir_commit_replaces_old_output(tmp_path):
    body = """\
    mkdir -p out && touch out/stale.half-written
    tmp=out.tmp.$$
    mkdir "$tmp" && echo ok > "$tmp/result"
    atomic_dir_commit "$tmp" out
    ls -A out; ls -d out.tmp.* 2>/dev/null || echo "no tmp"
    atomic_dir_commit missing.tmp out
    """
    out = _run(tmp_path, body)
    assert out.stdout == "result\nno tmp\n"
    assert out.returncode == 1
    assert "missing.tmp is not a folder" in out.stderr
    assert "(recipe.sh:16:main)" in out.stderr  # names the recipe's line, not the library's


def test_require_file_and_cmd_name_what_is_missing(tmp_path):
    (tmp_path / "present").touch()
    out = _run(tmp_path, "require_file present data/train/wav.scp data/train/text\n")
    assert out.returncode == 1
    assert "required file(s) not found: data/train/wav.scp data/train/text" in out.stderr
    assert "run the stage that creates them" in out.stderr
    out = _run(tmp_path, "require_cmd bash no-such-tool-xyz\necho after\n")
    assert out.returncode == 1
    assert out.stdout == ""
    assert "required command(s) not found on PATH: no-such-tool-xyz" in out.stderr
    assert "install" in out.stderr


# common.sh: run_jobs

JOB_SCRIPT = "bash -c 'echo \"job $1 of $2\"; sleep 1' _ JOB 3"


def test_run_jobs_runs_jobs_in_parallel_with_logs(tmp_path):
    body = f"""\
    SECONDS=0
    run_jobs --max-parallel 3 JOB=1:3 exp/log/feats.JOB.log {JOB_SCRIPT}
    echo "ok after $SECONDS s"
    """
    start = time.monotonic()
    out = _run(tmp_path, body)
    elapsed = time.monotonic() - start
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok after")
    assert elapsed < 2.5, f"3 jobs of 1 s with --max-parallel 3 took {elapsed:.1f} s"
    assert sorted(p.name for p in (tmp_path / "exp/log").iterdir()) == [
        f"feats.{j}.log" for j in (1, 2, 3)
    ]
    for j in (1, 2, 3):
        lines = (tmp_path / f"exp/log/feats.{j}.log").read_text().splitlines()
        assert lines[0] == f"# bash -c 'echo \"job $1 of $2\"; sleep 1' _ {j} 3"
        assert lines[1].startswith("# Started at ")
        assert lines[2] == f"job {j} of 3"
        assert re.fullmatch(r"# Accounting: time=\d+ threads=1", lines[3])
        assert re.fullmatch(r"# Ended \(code 0\) at .+, elapsed time \d+ seconds", lines[4])


def test_run_jobs_respects_max_parallel(tmp_path):
    start = time.monotonic()
    out = _run(tmp_path, f"run_jobs --max-parallel 1 JOB=1:2 log/x.JOB.log {JOB_SCRIPT}\n")
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - start >= 2.0


def test_run_jobs_single_job_form(tmp_path):
    out = _run(tmp_path, 'run_jobs exp/log/one.log printf "%s|" "a b" JOB\necho rc=$?\n')
    assert out.returncode == 0, out.stderr
    assert out.stdout == "rc=0\n"
    lines = (tmp_path / "exp/log/one.log").read_text().splitlines()
    assert lines[0] == "# printf '%s|' 'a b' JOB"
    assert lines[2] == "a b|JOB|"  # no JOB= range: nothing substituted
    assert lines[-1].startswith("# Ended (code 0) at ")


def test_run_jobs_shows_failed_job_log(tmp_path):
    body = """\
    run_jobs JOB=1:3 exp/log/train.JOB.log \\
      bash -c 'for i in $(seq 30); do echo "noise $i"; done; if [ $1 = 2 ]; then echo boom-$1; exit 3; fi' _ JOB
    echo "not reached"
    """
    out = _run(tmp_path, body)
    assert out.returncode != 0
    assert out.stdout == ""
    assert "run_jobs: 1 / 3 failed, log is in exp/log/train.*.log" in out.stderr
    assert "job 2 exited with code 3; last 20 lines of exp/log/train.2.log" in out.stderr
    assert "boom-2" in out.stderr
    assert "noise 30" in out.stderr and "noise 5\n" not in out.stderr  # the tail only
    assert "boom-1" not in out.stderr and "train.1.log" not in out.stderr


def test_run_jobs_failure_can_be_handled_by_caller(tmp_path):
    out = _run(tmp_path, 'if ! run_jobs log/x.log false; then echo "handled"; fi\n')
    assert out.returncode == 0
    assert out.stdout == "handled\n"
    assert "1 / 1 failed" in out.stderr


def test_run_jobs_rejects_shared_log_and_bad_range(tmp_path):
    out = _run(tmp_path, "run_jobs JOB=1:2 log/x.log true\n")
    assert out.returncode == 1
    assert "must contain JOB" in out.stderr
    out = _run(tmp_path, "run_jobs JOB=3:1 log/x.JOB.log true\n")
    assert out.returncode == 1
    assert "bad job range 'JOB=3:1'" in out.stderr


def _alive(pid: int) -> bool:
    """True if pid runs and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_jobs_killed_parent_kills_jobs(tmp_path, sig):
    script = tmp_path / "recipe.sh"
    script.write_text(
        f"set -euo pipefail\n. {LIB / 'common.sh'}\n"
        "run_jobs --max-parallel 3 JOB=1:3 log/sleep.JOB.log "
        "bash -c 'echo $$ > pid.$1; sleep 30; echo survived' _ JOB\n"
    )
    # bash cannot trap a signal ignored at its start, and a test suite started in the background
    # (`pytest &` from a script) ignores SIGINT: give the recipe the default disposition
    proc = subprocess.Popen(
        ["bash", str(script)], cwd=tmp_path, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        pid_files = [tmp_path / f"pid.{j}" for j in (1, 2, 3)]
        deadline = time.monotonic() + 15  # generous: a loaded 2-core CI machine
        while not all(p.exists() and p.read_text().strip() for p in pid_files):
            assert time.monotonic() < deadline, "jobs did not start"
            time.sleep(0.05)
        pids = [int(p.read_text()) for p in pid_files]
        assert all(_alive(pid) for pid in pids)
        proc.send_signal(sig)
        # well under the jobs' 30 s sleep, which a parent that waits for them would take
        assert proc.wait(timeout=20) == 128 + sig
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids):
            assert time.monotonic() < deadline, "job processes survived their parent"
            time.sleep(0.05)
        for j in (1, 2, 3):
            lines = (tmp_path / f"log/sleep.{j}.log").read_text().splitlines()
            assert "survived" not in lines
            assert lines[-1].startswith(f"# Killed by run_jobs (signal {sig.name[3:]}) at ")
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in tmp_path.glob("pid.*"):
            if p.read_text().strip() and _alive(pid := int(p.read_text())):
                os.kill(pid, signal.SIGKILL)
