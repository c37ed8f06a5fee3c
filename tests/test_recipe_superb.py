"""recipes/superb.sh end to end on the test-scale synthetic corpus: each upstream's short tasks as
one job, two jobs at a time; the protocol's un-normalised FBANK beside the layer-normed one, labelled
in results.md; the same numbers as one job at a time; a rerun that skips every job."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(corpus: Path, exp: Path, nj: int) -> subprocess.CompletedProcess:
    args = [
        "bash", str(ROOT / "recipes/superb.sh"), "--upstream", "fbank_no_cmvn",
        "--protocol", "fbank_no_cmvn", "--tasks", "sid,er", "--data", str(corpus),
        "--exp", str(exp), "--steps", "12", "--lrs", "1e-2", "--nj", str(nj), "--device", "cpu",
        "--opts", "--normalize --eval-every 4 --batch-size 16",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)


def _summaries(exp: Path) -> dict[tuple[str, str], dict]:
    return {
        (p.parent.parent.name, p.parent.name): json.loads(p.read_text())
        for p in exp.glob("*/*/summary.json")
    }


def _span(log: Path) -> tuple[datetime, datetime]:
    text = log.read_text()
    stamp = r"at (\w{3} \w{3} +\d+ [\d:]+ \w+ \d{4})"
    start = re.search(r"# Started " + stamp, text).group(1)
    end = re.search(r"# Ended \(code 0\) " + stamp, text).group(1)
    fmt = "%a %b %d %H:%M:%S %Z %Y"
    return datetime.strptime(" ".join(start.split()), fmt), datetime.strptime(
        " ".join(end.split()), fmt
    )


def test_parallel_jobs_protocol_input_and_resume(synth_corpus: Path, tmp_path: Path):
    par, seq = tmp_path / "par", tmp_path / "seq"
    proc = _run(synth_corpus, par, nj=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = _summaries(par)
    assert set(got) == {(u, t) for u in ("fbank_no_cmvn", "fbank_no_cmvn_protocol")
                        for t in ("sid", "er")}  # fmt: skip
    for (up, task), s in got.items():
        assert s["normalize"] is (up == "fbank_no_cmvn"), (up, task)
        normed = "layer-normed" in (par / up / task / "log.txt").read_text().splitlines()[0]
        assert normed is (up == "fbank_no_cmvn")
    results = (par / "results.md").read_text()
    assert "| fbank_no_cmvn_protocol | as is (protocol) |" in results
    assert "| fbank_no_cmvn | layer-normed (ours) |" in results
    # two jobs (sid,er of each input) on two slots: they ran at the same time
    (s1, e1), (s2, e2) = _span(par / "log" / "superb.1.log"), _span(par / "log" / "superb.2.log")
    assert s2 <= e1 and s1 <= e2

    # one job at a time gives the same numbers: the jobs share nothing but the cache
    proc = _run(synth_corpus, seq, nj=1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for key, s in _summaries(seq).items():
        assert s["values"] == got[key]["values"], key

    again = _run(synth_corpus, par, nj=2)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("done already") == 4 and "probe jobs" not in again.stderr
