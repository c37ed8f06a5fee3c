"""recipes/selftrain.sh end to end on the test-scale synthetic corpus, a few updates per model:
two teachers, their n-best lists of the unlabeled set fused into pseudo-labels, a student on
both sets, a second generation taught by that student, the oracle, and the report; a rerun skips
every step, and a run killed in the middle of a student's training resumes to the same
pseudo-labels and the same student weights as the uninterrupted run."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import kenlm
import torch

ROOT = Path(__file__).resolve().parents[1]


def _args(asr: Path, exp: Path, *extra: str) -> list[str]:
    return [
        "bash", str(ROOT / "recipes/selftrain.sh"),
        "--config", str(ROOT / "egs/synth/conf/asr/fbank_blstm.yaml"),
        "--labeled", str(asr / "train_labeled"), "--unlabeled", str(asr / "train_unlabeled"),
        "--dev", str(asr / "dev"), "--test", str(asr / "test"),
        "--lm-text", str(asr / "lm_text.txt"), "--exp", str(exp), "--oracle", "true",
        "--generations", "2",
        "--lm-order", "2", "--lm-prune", "0 1", "--rescore-order", "3", "--beam", "4",
        "--nbest", "4", "--tune-alpha", "0.5", "--tune-beta", "1",
        "--pseudo-opts", "--drop-lowest 10 --max-wps 20",
        "--overrides", "trainer.max_updates=3 trainer.save_every=3 trainer.warmup_updates=1",
        *extra,
    ]  # fmt: skip


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _weights(model_pt: Path) -> dict[str, torch.Tensor]:
    return torch.load(model_pt, map_location="cpu", weights_only=True)["model"]


def test_selftrain_recipe_runs_and_resumes(synth_corpus: Path, tmp_path: Path):
    asr, exp = synth_corpus / "asr", tmp_path / "exp"
    proc = subprocess.run(_args(asr, exp), capture_output=True, text=True, timeout=900, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for model in ("gen1/teacher0", "gen1/teacher1", "gen1/student", "gen2/student", "oracle"):
        assert (exp / model / "model.pt").is_file(), model
    # the student and the oracle train twice the teachers' updates (--student-updates 2x)
    for model, updates in (("gen1/teacher0", 3), ("gen1/student", 6), ("oracle", 6)):
        assert f"max_updates: {updates}\n" in (exp / model / "config.yaml").read_text(), model
    report = json.loads((exp / "gen1" / "pseudo" / "pseudo_label.json").read_text())
    assert len(report["teachers"]) == 2 and report["config"]["combine"] == "fusion"
    steps = {r["step"]: r for r in report["steps"]}
    unlabeled = len((asr / "train_unlabeled" / "wav.scp").read_text().splitlines())
    assert steps["combined"]["kept"] == unlabeled and steps["combined"]["wer"] is not None
    kept = len((exp / "gen1" / "pseudo" / "text").read_text().splitlines())
    assert kept == report["steps"][-1]["kept"] < unlabeled  # the confidence cut removed some
    # generation 2 is taught by generation 1's student alone
    assert (exp / "gen2" / "teachers.txt").read_text().split() == [str(exp / "gen1" / "student")]
    gen2 = json.loads((exp / "gen2" / "pseudo" / "pseudo_label.json").read_text())
    assert gen2["teachers"] == [str(exp / "gen1/student/decode/train_unlabeled_beam_lm")]
    assert (exp / "final").resolve() == (exp / "gen2" / "student").resolve()
    # the teachers and the students saw the unlabeled set without its text; the report scored it
    assert not (exp / "unlabeled" / "text").exists()
    oracle = (asr / "train_unlabeled" / "text").read_text()
    assert (exp / "unlabeled.text.oracle").read_text() == oracle
    assert report["scored_on"] == str(exp / "unlabeled.text.oracle")
    assert (exp / "gen1" / "pseudo" / "text").read_text() != oracle
    results = (exp / "RESULTS.md").read_text()
    assert "| gen1 student |" in results and "| gen2 student |" in results
    assert "Generation 2 pseudo-labels" in results and "test rescored" in results
    assert (exp / "wer_per_generation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = subprocess.run(_args(asr, exp), capture_output=True, text=True, timeout=900, env=ENV)
    assert again.returncode == 0 and "pseudo-labels done already" in again.stderr

    # the unlabeled set is decoded in --nj (2) shards, one job and log each; with one shard's
    # output lost (as after a kill), a rerun decodes that shard alone and merges the same lists
    decode = exp / "gen1" / "teacher0" / "decode" / "train_unlabeled_beam_lm"
    shards = decode.parent / "train_unlabeled_beam_lm.shards"
    lists = (decode / "nbest.jsonl").read_text()
    assert sorted(p.name for p in shards.glob("log/*.log")) == ["decode.1.log", "decode.2.log"]
    assert lists.count("\n") == unlabeled
    (decode / ".done").unlink()
    (decode / "nbest.jsonl").unlink()
    for f in (shards / "2").iterdir():
        f.unlink()
    stage2 = _args(asr, exp, "--stage", "2", "--stop-stage", "2")
    proc = subprocess.run(stage2, capture_output=True, text=True, timeout=900, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "done already" in (shards / "log" / "decode.1.log").read_text()
    assert "done already" not in (shards / "log" / "decode.2.log").read_text()
    assert (decode / "nbest.jsonl").read_text() == lists

    # --rescore true: the same teachers' n-best lists re-ranked by their larger (here 3-gram) LM
    # with their dev-tuned rescoring weights; each score checked against kenlm's own sentence
    # scores, the pseudo-labels taken from the re-ranked lists
    teachers = f"{exp / 'gen1' / 'teacher0'} {exp / 'gen1' / 'teacher1'}"
    same = ("--teacher-dirs", teachers, "--teacher-seeds", "", "--oracle", "false")
    rescored = tmp_path / "rescored"
    steps23 = ("--rescore", "true", "--generations", "1", "--stage", "2", "--stop-stage", "3")
    proc = subprocess.run(_args(asr, rescored, *same, *steps23), capture_output=True, text=True, timeout=900, env=ENV)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    teacher0 = exp / "gen1" / "teacher0"
    decode = teacher0 / "decode" / "train_unlabeled_beam_lm_rescore"
    settings = json.loads((decode / "decode.json").read_text())
    tuned = json.loads((teacher0 / "decode" / "dev_beam_lm_rescore" / "decode.json").read_text())
    assert settings["rescore_lm"] == str(teacher0 / "lm" / "3gram" / "lm.bin")
    alpha, beta = tuned["rescore_alpha"], tuned["rescore_beta"]
    assert (settings["rescore_alpha"], settings["rescore_beta"]) == (alpha, beta)
    lm = kenlm.Model(settings["rescore_lm"])
    for line in (decode / "nbest.jsonl").read_text().splitlines()[:40]:
        nbest = json.loads(line)["nbest"]
        for h in nbest:
            words = h["text"].split()
            lm_ln = math.log(10) * (lm.score(h["text"], bos=True, eos=True) - 10 * sum(w not in lm for w in words))  # fmt: skip
            assert abs(h["score"] - (h["am_score"] + alpha * lm_ln + beta * len(words))) < 1e-4
        assert [h["score"] for h in nbest] == sorted((h["score"] for h in nbest), reverse=True)
    report = json.loads((rescored / "gen1" / "pseudo" / "pseudo_label.json").read_text())
    assert report["teachers"] == [str(decode), str(decode).replace("teacher0", "teacher1")]

    # killed once the first student has its first checkpoint (update 3 of 6), then rerun; the
    # same teachers (their decodes of the unlabeled set kept), no oracle, to save time
    killed = tmp_path / "killed"
    run = subprocess.Popen(_args(asr, killed, *same), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env=ENV, start_new_session=True)  # fmt: skip
    checkpoints = killed / "gen1" / "student" / "checkpoints"
    deadline = time.monotonic() + 600
    while run.poll() is None and not any(checkpoints.glob("*.pt")):
        assert time.monotonic() < deadline, "the student never saved a checkpoint"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert not (killed / "gen1" / "student" / "model.pt").exists(), "killed too late"
    resumed = subprocess.run(_args(asr, killed, *same), capture_output=True, text=True, timeout=900, env=ENV)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for k in ("gen1", "gen2"):
        assert (killed / k / "pseudo" / "text").read_text() == (
            exp / k / "pseudo" / "text"
        ).read_text()
        a, b = (
            _weights(exp / k / "student" / "model.pt"),
            _weights(killed / k / "student" / "model.pt"),
        )
        assert a.keys() == b.keys()
        for name in a:
            assert torch.allclose(a[name], b[name], atol=1e-6, rtol=0), (k, name)
