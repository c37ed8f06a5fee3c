"""recipes/asr.sh end to end on the test-scale synthetic corpus: LMs with lmplz, a few CTC
updates, dev tuning, test decodes with rescoring, the WER table; a rerun skips every step."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_asr_recipe_runs_and_resumes(synth_corpus: Path, tmp_path: Path):
    asr, exp = synth_corpus / "asr", tmp_path / "exp"
    args = [
        "bash", str(ROOT / "recipes/asr.sh"),
        "--config", str(ROOT / "egs/synth/conf/asr/fbank_blstm.yaml"),
        "--train", str(asr / "train_labeled"), "--dev", str(asr / "dev"),
        "--test", str(asr / "test"), "--lm-text", str(asr / "lm_text.txt"), "--exp", str(exp),
        "--lm-order", "2", "--lm-prune", "0 1", "--rescore-order", "3", "--beam", "4", "--nbest", "4",
        "--tune-alpha", "0.3,1.0", "--tune-beta", "0,1",
        "--overrides", "trainer.max_updates=3 trainer.save_every=3 trainer.warmup_updates=1",
    ]  # fmt: skip
    _run(args)
    for order in (2, 3):
        assert (exp / f"lm/{order}gram/lm.arpa").is_file() and (
            exp / f"lm/{order}gram/lm.bin"
        ).is_file()
    assert (exp / "model.pt").is_file() and (exp / "tokens.txt").is_file()
    decodes = ["dev_greedy", "dev_beam_lm", "dev_beam_lm_rescore", "test_greedy", "test_beam_lm"]
    decodes.append("test_beam_lm_rescore")
    for name in decodes:
        summary = json.loads((exp / "decode" / name / "summary.json").read_text())
        assert summary["utterances"] == len(
            (asr / name.split("_")[0] / "text").read_text().splitlines()
        )
    tuned = json.loads((exp / "decode/dev_beam_lm_rescore/decode.json").read_text())
    assert len(tuned["rescore_grid"]) == 4 and "rescore_alpha" in tuned
    table = (exp / "RESULTS.md").read_text().splitlines()
    assert sum(line.startswith("| dev_") or line.startswith("| test_") for line in table) == 6

    again = _run(args)  # every step is done: nothing retrained or re-decoded
    assert "done already" in again.stderr + again.stdout
    assert "CTC training on" not in again.stderr + again.stdout
