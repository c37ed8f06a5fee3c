"""recipes/enhance.sh end to end on the test-scale synthetic corpus, a few updates per model:
Noise2Noise, SURE on the white subset, Noise2Self on the waveform network and the shared-hum
failure case, each scored (the hum case on hum-corrupted inputs too) and tabled; a rerun skips
every step. (The ASR rows need an asr.sh exp dir; `tests/test_enhance.py` covers --enhance.)"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_enhance_recipe_runs_and_resumes(synth_corpus: Path, tmp_path: Path):
    noisy, exp = synth_corpus / "noisy", tmp_path / "exp"
    args = [
        "bash", str(ROOT / "recipes/enhance.sh"), "--train", str(noisy / "train"),
        "--test", str(noisy / "test"), "--exp", str(exp), "--nj", "1",
        "--models", "noise2noise noise2self n2n_shared_hum",
        "--overrides", "trainer.max_updates=3 trainer.save_every=3 model.hidden_size=16",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for model in ("noise2noise", "noise2self", "n2n_shared_hum"):
        summary = json.loads((exp / model / "test" / "summary.json").read_text())
        assert summary["all"]["utterances"] == 4 and summary["model"] == model.replace(
            "n2n_shared_hum", "noise2noise"
        )
    config = (exp / "noise2self" / "config.yaml").read_text()
    assert "kind: wave" in config and "regime: noise2self" in config
    assert "shared_noise: hum" in (exp / "n2n_shared_hum" / "config.yaml").read_text()
    hum = json.loads((exp / "n2n_shared_hum" / "test_hum" / "summary.json").read_text())
    assert hum["extra_noise"] == "hum"
    results = (exp / "RESULTS.md").read_text()
    assert "| noise2self |" in results and "The failure case" in results
    again = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0 and "noise2noise trained already" in again.stderr
