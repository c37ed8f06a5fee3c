"""The installers in tools/: idempotent and fast when done, clear when something is missing,
and the KenLM programs they build write language models the kenlm module can load."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import require_module

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"
TOOLS_BIN = TOOLS / "bin"


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 120, **kwargs):
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


def kenlm_program(name: str) -> Path:
    """tools/bin/<name>, failing (not skipping) when it has not been built: CI builds it first."""
    path = TOOLS_BIN / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{path} does not exist; run tools/install_kenlm.sh to build it")
    return path


def test_install_debian_is_quick_when_everything_is_installed():
    start = time.monotonic()
    proc = run(["bash", str(TOOLS / "install_debian.sh")])
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "up to date" in proc.stdout
    assert elapsed < 10, f"install_debian.sh took {elapsed:.1f} s when nothing was missing"


def test_install_debian_names_missing_package_when_not_root():
    missing = "speechssl-no-such-package"
    proc = run(
        ["bash", str(TOOLS / "install_debian.sh")],
        env={"SPEECHSSL_DEBIAN_PACKAGES": f"sox {missing}", "SPEECHSSL_ASSUME_NONROOT": "1"},
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert missing in output
    assert "[ERROR]" in output
    # sox is installed, so it must not be reported as missing.
    missing_line = next(line for line in output.splitlines() if "missing:" in line)
    assert "sox" not in missing_line


def test_install_kenlm_is_a_quick_noop_when_built():
    kenlm_program("lmplz")
    start = time.monotonic()
    proc = run(["bash", str(TOOLS / "install_kenlm.sh")])
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "up to date" in proc.stdout, proc.stdout + proc.stderr
    assert elapsed < 10, f"install_kenlm.sh took {elapsed:.1f} s with lmplz already built"


def _corpus() -> list[str]:
    """50 short, distinct sentences with repeated structure, so a trigram model learns order."""
    subjects = ["the cat", "the dog", "a bird", "my friend", "the teacher"]
    verbs = ["sees", "likes", "finds", "follows", "hears"]
    objects = ["the ball", "a red car", "the old house", "some music", "the river", "a tree"]
    sentences = [f"{s} {v} {o}" for s, v, o in itertools.product(subjects, verbs, objects)]
    return sentences[::3][:50]


def test_lmplz_and_build_binary_make_models_kenlm_loads(tmp_path: Path):
    kenlm = require_module("kenlm")
    lmplz, build_binary = kenlm_program("lmplz"), kenlm_program("build_binary")
    sentences = _corpus()
    assert len(sentences) == 50
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(sentences) + "\n")

    arpa = tmp_path / "lm.arpa"
    with corpus.open() as stdin, arpa.open("w") as stdout:
        proc = subprocess.run(
            [str(lmplz), "-o", "3", "--discount_fallback", "-S", "64M", "-T", str(tmp_path)],
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    header = arpa.read_text().split("\n\n", 1)[0].splitlines()
    assert header[0] == "\\data\\"
    counts = dict(re.fullmatch(r"ngram (\d)=(\d+)", line).groups() for line in header[1:])
    assert set(counts) == {"1", "2", "3"}
    vocab = {w for s in sentences for w in s.split()}
    assert int(counts["1"]) == len(vocab) + 3  # + <s>, </s>, <unk>

    binary = tmp_path / "lm.bin"
    proc = run([str(build_binary), str(arpa), str(binary)], timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert binary.stat().st_size > 0

    in_corpus = sentences[7]
    scrambled = " ".join(reversed(in_corpus.split()))
    for path in (arpa, binary):
        model = kenlm.Model(str(path))
        assert model.order == 3
        assert model.score(in_corpus) > model.score(scrambled) + 1.0, path.name


def test_check_install_reports_lmplz():
    kenlm_program("lmplz")
    proc = run([sys.executable, str(TOOLS / "check_install.py"), "--no-fail"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    lmplz_line = next((line for line in lines if re.match(r"\s*\[.\] lmplz\b", line)), None)
    assert lmplz_line is not None, proc.stdout
    assert lmplz_line.strip().startswith("[x] lmplz"), lmplz_line
    assert str(TOOLS_BIN / "lmplz") in lmplz_line


def test_check_install_quiet_prints_only_missing():
    proc = run([sys.executable, str(TOOLS / "check_install.py"), "--quiet", "--no-fail"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all(line.startswith("[ ]") for line in proc.stdout.splitlines()), proc.stdout
