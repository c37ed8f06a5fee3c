"""tools/superb_margins.py: each task's stated margin over chance, and the exit status."""

import json
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "superb_margins.py"


def write_task(exp: Path, upstream: str, task: str, mean: float, chance: float, **test) -> None:
    task_dir = exp / upstream / task
    run = task_dir / "lr1.00e-03" / "seed0"
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"test": test}))
    summary = {"task": task, "upstream": upstream, "metric": "m", "mean": mean,
               "chance": chance, "dev_lr": 1e-3}  # fmt: skip
    (task_dir / "summary.json").write_text(json.dumps(summary))


def run_tool(exp: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), str(exp)], capture_output=True, text=True)


def test_margins_met_and_missed(tmp_path):
    exp = tmp_path / "superb"
    write_task(exp, "fbank", "ks", 20.0, 8.33)  # 2.4x chance
    write_task(exp, "fbank", "pr", 49.5, 100.0)
    write_task(exp, "fbank", "se", 1.5, 1.3, si_sdri=0.8)
    write_task(exp, "fbank", "asr", 82.0, 100.0)
    write_task(exp, "fbank", "sv", 10.0, 50.0)
    done = run_tool(exp)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5/5 margins met" in done.stdout and "MISS" not in done.stdout

    write_task(exp, "ssl", "ic", 5.0, 3.06)  # 1.6x chance: below the stated 2x
    write_task(exp, "ssl", "se", 1.5, 1.3, si_sdri=-0.1)  # PESQ up, SI-SDR down
    done = run_tool(exp)
    assert done.returncode == 1 and "5/7 margins met" in done.stdout
    missed = [line for line in done.stdout.splitlines() if line.startswith("MISS")]
    assert [line.split()[1:3] for line in missed] == [["ssl", "ic"], ["ssl", "se"]]


def test_no_summaries_is_an_error(tmp_path):
    done = run_tool(tmp_path)
    assert done.returncode == 1 and "no <upstream>/<task>/summary.json" in done.stderr


def test_unreadable_summary_and_missing_runs_name_the_file(tmp_path):
    exp = tmp_path / "superb"
    write_task(exp, "fbank", "ks", 20.0, 8.33)
    (exp / "fbank" / "ks" / "summary.json").write_text("{truncated")
    done = run_tool(exp)
    assert (
        done.returncode == 1
        and f"{exp / 'fbank' / 'ks' / 'summary.json'}: unreadable" in done.stderr
    )

    exp = tmp_path / "superb2"
    write_task(exp, "fbank", "se", 1.5, 1.3, si_sdri=0.8)
    for result in (exp / "fbank" / "se").glob("**/result.json"):
        result.unlink()
    done = run_tool(exp)
    assert done.returncode == 1 and "no result.json for the reported lr 1.00e-03" in done.stderr
