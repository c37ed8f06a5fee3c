"""`speechssl selftrain-report` on a hand-written exp dir: the WER table per generation, the
word recovery rate computed by hand, the pseudo-label rows, the plot; a missing layout is one
`error:` line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from speechssl.asr.selftrain_report import collect


def _model(d: Path, wers: dict[str, float]) -> None:
    for name, wer in wers.items():
        (d / "decode" / name).mkdir(parents=True)
        (d / "decode" / name / "summary.json").write_text(json.dumps({"wer": wer}))


def _pseudo(d: Path, teachers: int, wers: list[float]) -> None:
    steps = [{"step": s, "removed": 0 if i < 1 else 10, "kept": 100 - 10 * i, "wer": w}
             for i, (s, w) in enumerate(zip(("combined", "confidence"), wers))]  # fmt: skip
    (d / "pseudo").mkdir(parents=True)
    report = {"config": {"combine": "fusion"}, "teachers": ["t"] * teachers, "steps": steps}
    (d / "pseudo" / "pseudo_label.json").write_text(json.dumps(report))


def _exp(tmp_path: Path) -> Path:
    exp = tmp_path / "exp"
    t0, t1 = tmp_path / "asr" / "fbank", exp / "gen1" / "teacher1"
    _model(t0, {"dev_beam_lm": 31.0, "test_beam_lm": 30.0, "test_greedy": 60.0})
    _model(t1, {"dev_beam_lm": 33.0, "test_beam_lm": 32.0, "test_greedy": 58.0})
    _model(exp / "gen1" / "student", {"dev_beam_lm": 28.0, "test_beam_lm": 26.0, "test_greedy": 55.0})  # fmt: skip
    _model(exp / "gen2" / "student", {"dev_beam_lm": 27.0, "test_beam_lm": 25.0})
    _model(exp / "oracle", {"dev_beam_lm": 19.0, "test_beam_lm": 20.0, "test_greedy": 50.0})
    (exp / "gen1" / "teachers.txt").write_text(f"{t0}\n{t1}\n")
    (exp / "gen2" / "teachers.txt").write_text(f"{exp / 'gen1' / 'student'}\n")
    _pseudo(exp / "gen1", 2, [29.0, 27.0])
    _pseudo(exp / "gen2", 1, [26.0, 24.0])
    return exp


def test_wrr_is_against_the_best_first_generation_teacher(tmp_path: Path):
    report = collect(_exp(tmp_path))
    rows = {r["model"]: r for r in report["models"]}
    assert list(rows) == ["teacher fbank", "teacher1", "gen1 student", "gen2 student", "oracle"]
    assert report["baseline"]["test_beam_lm"] == 30.0 and report["baseline"]["test_greedy"] == 58.0
    # (30 - 26) / (30 - 20) and (30 - 25) / (30 - 20); greedy: (58 - 55) / (58 - 50)
    assert abs(rows["gen1 student"]["wrr"]["test_beam_lm"] - 40.0) < 1e-9
    assert abs(rows["gen2 student"]["wrr"]["test_beam_lm"] - 50.0) < 1e-9
    assert abs(rows["gen1 student"]["wrr"]["test_greedy"] - 37.5) < 1e-9
    assert rows["gen2 student"]["wrr"]["test_greedy"] is None  # not decoded greedily
    assert report["sets"] == ["dev", "test"]
    assert [p["steps"][-1]["wer"] for p in report["pseudo"]] == [27.0, 24.0]


def test_report_command_writes_table_json_and_plot(tmp_path: Path):
    exp = _exp(tmp_path)
    cmd = [sys.executable, "-m", "speechssl.cli", "selftrain-report", str(exp)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = (exp / "RESULTS.md").read_text()
    assert text == proc.stdout
    assert "| gen2 student | - | 27.00 | - | - | 25.00 | - |" in text
    assert "| gen1 student | - | 25.00% | - | 37.50% | 40.00% | - |" in text
    assert "Generation 2 pseudo-labels (fusion of 1 teacher(s))" in text
    assert json.loads((exp / "results.json").read_text())["baseline"]["dev_beam_lm"] == 31.0
    assert (exp / "wer_per_generation.png").read_bytes()[:4] == b"\x89PNG"
    bad = subprocess.run(cmd[:-1] + [str(tmp_path / "nothing")], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr
