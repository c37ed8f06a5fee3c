"""recipes/selftrain.sh end to end on the test-scale synthetic corpus, a few updates per model:
two teachers, their n-best lists of the unlabeled set fused into pseudo-labels, a student on
both sets, the oracle, and the WER table; a rerun skips every step."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_selftrain_recipe_runs_and_resumes(synth_corpus: Path, tmp_path: Path):
    asr, exp = synth_corpus / "asr", tmp_path / "exp"
    args = [
        "bash", str(ROOT / "recipes/selftrain.sh"),
        "--config", str(ROOT / "egs/synth/conf/asr/fbank_blstm.yaml"),
        "--labeled", str(asr / "train_labeled"), "--unlabeled", str(asr / "train_unlabeled"),
        "--dev", str(asr / "dev"), "--test", str(asr / "test"),
        "--lm-text", str(asr / "lm_text.txt"), "--exp", str(exp), "--oracle", "true",
        "--lm-order", "2", "--lm-prune", "0 1", "--rescore-order", "3", "--beam", "4",
        "--nbest", "4", "--tune-alpha", "0.5", "--tune-beta", "1",
        "--pseudo-opts", "--drop-lowest 10 --max-wps 20",
        "--overrides", "trainer.max_updates=3 trainer.save_every=3 trainer.warmup_updates=1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for model in ("teacher0", "teacher1", "student", "oracle"):
        assert (exp / model / "model.pt").is_file(), model
    report = json.loads((exp / "pseudo" / "pseudo_label.json").read_text())
    assert len(report["teachers"]) == 2 and report["config"]["combine"] == "fusion"
    steps = {r["step"]: r for r in report["steps"]}
    unlabeled = len((asr / "train_unlabeled" / "wav.scp").read_text().splitlines())
    assert steps["combined"]["kept"] == unlabeled and steps["combined"]["wer"] is not None
    kept = len((exp / "pseudo" / "text").read_text().splitlines())
    assert kept == report["steps"][-1]["kept"] < unlabeled  # the confidence cut removed some
    # the teachers and the student saw the unlabeled set without its text; the report scored it
    assert not (exp / "unlabeled" / "text").exists()
    oracle = (asr / "train_unlabeled" / "text").read_text()
    assert (exp / "unlabeled.text.oracle").read_text() == oracle
    assert report["scored_on"] == str(exp / "unlabeled.text.oracle")
    assert (exp / "pseudo" / "text").read_text() != oracle
    results = (exp / "RESULTS.md").read_text()
    assert "| test_beam_lm_rescore |" in results and "pseudo-label WER" in results
    again = subprocess.run(args, capture_output=True, text=True, timeout=900, env=env)
    assert again.returncode == 0 and "pseudo-labels done already" in again.stderr
