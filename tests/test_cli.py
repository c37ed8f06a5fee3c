"""The one command line: every command listed by ``speechssl --help``, and config mistakes in
``asr-train`` and ``superb`` (a YAML key misspelt, a wrong type, a bad ``--set``) each end in
one ``error:`` line naming the key and the file (or ``--set``), exit status 1."""

from __future__ import annotations

import subprocess
import sys

import pytest

from speechssl.asr.train import ASRTrainConfig
from speechssl.cli import COMMANDS, main
from speechssl.config import load_config
from speechssl.superb.runner import SuperbConfig, split_task_options


def test_help_lists_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "speechssl.cli", "--help"], capture_output=True, text=True
    ).stdout
    for module in COMMANDS:
        assert module.__name__.rsplit(".", 1)[-1].replace("_", "-") in out
    assert "asr-decode" in out and "decode a data dir" in out


def one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize(
    ("yaml_text", "sets", "named"),
    [
        (
            "trainer:\n  lrr: 0.1\n",
            [],
            ["{file}", "'lrr'", "in trainer", "allowed: ", "max_updates"],
        ),
        ("trainer:\n  lr: abc\n", [], ["{file}", "trainer.lr", "expected a number", "'abc'"]),
        ("trainer:\n  lr: 0.1\n", ["trainer.lr=abc"], ["--set", "trainer.lr", "'abc'"]),
        ("trainer:\n  lr: 0.1\n", ["trainer.lr"], ["--set", "trainer.lr", "key=value"]),
        ("trainer:\n  lr: 0.1\n", ["modle.head=linear"], ["--set", "'modle'", "allowed: "]),
    ],
)
def test_asr_train_config_errors(tmp_path, capsys, yaml_text, sets, named):
    cfg = tmp_path / "asr.yaml"
    cfg.write_text(yaml_text)
    argv = ["asr-train", "--config", str(cfg), "--data", str(tmp_path), "--exp", str(tmp_path / "exp")]  # fmt: skip
    assert main(argv + [x for s in sets for x in ("--set", s)]) == 1
    line = one_error(capsys)
    for part in named:
        assert part.format(file=cfg) in line, line
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize(
    ("yaml_text", "sets", "named"),
    [
        ("stepz: 3\n", [], ["{file}", "'stepz'", "SuperbConfig", "allowed: ", "eval_every"]),
        ("steps: many\n", [], ["{file}", "steps", "expected int", "'many'"]),
        ("task_options:\n  xyz: {steps: 3}\n", [], ["{file}", "'xyz'", "pr, ks"]),
        ("steps: 3\n", ["seeds=abc"], ["--set", "seeds", "expected a list"]),
        ("steps: 3\n", ["asr.steps"], ["--set", "'asr.steps'", "key=value"]),
        ("steps: 3\n", ["xyz.steps=3"], ["--set", "'xyz'", "a task (pr, ks", "field (lrs, "]),
    ],
)
def test_superb_config_errors(tmp_path, capsys, yaml_text, sets, named):
    cfg = tmp_path / "superb.yaml"
    cfg.write_text(yaml_text)
    argv = ["superb", "--config", str(cfg), "--upstream", "fbank", "--task", "er",
            "--data", str(tmp_path), "--exp", str(tmp_path / "exp")]  # fmt: skip
    assert main(argv + [x for s in sets for x in ("--set", s)]) == 1
    line = one_error(capsys)
    for part in named:
        assert part.format(file=cfg) in line, line
    assert not (tmp_path / "exp").exists()


def test_yaml_1e_minus_1_is_a_float(tmp_path):
    """PyYAML reads ``1e-1`` (no dot) as a string; typed configs read it as 0.1."""
    path = tmp_path / "c.yaml"
    path.write_text("trainer:\n  lr: 1e-1\n")
    assert load_config(ASRTrainConfig, path).trainer.lr == 0.1
    path.write_text("lrs: [1e-1, 1e-2]\ntask_options:\n  er: {lrs: [1e-1]}\n")
    cfg = load_config(SuperbConfig, path, ["task_options.asr.lrs=[1e-1]"])
    _, probe = split_task_options(cfg.task_options)  # a task's lrs are read as numbers too
    assert cfg.lrs == [0.1, 0.01] and probe == {"er": {"lrs": [0.1]}, "asr": {"lrs": [0.1]}}
