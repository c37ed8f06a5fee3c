"""egs/synth/run.sh end to end at the test scale: stages 1-2, rerun no-op, kill and resume.

These run the real recipe (espeak-ng, flite, torchaudio features) in a temporary folder.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from speechssl.data.kaldi import DataDir
from speechssl.data.validate import validate
from speechssl.features.pipeline import load_features

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "egs" / "synth" / "run.sh"


def _cmd(work: Path, *extra: str) -> list[str]:
    return [
        "bash", str(RUN), "--stage", "1", "--stop-stage", "2", "--scale", "test", "--nj", "2",
        "--data", str(work / "data"), "--feat-dir", str(work / "fbank"),
        "--exp", str(work / "exp"), *extra,
    ]  # fmt: skip


def _run(work: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(_cmd(work, *extra), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _digest(work: Path) -> dict[str, str]:
    """Hash of every file under data/ and fbank/ except markers and logs (dated)."""
    out = {}
    for top in ("data", "fbank"):
        for path in sorted((work / top).rglob("*")):
            rel = path.relative_to(work)
            skip = path.name.endswith((".done", ".log")) or "log" in rel.parts
            if path.is_file() and not skip:
                out[str(rel)] = hashlib.sha1(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, str], float]:
    work = tmp_path_factory.mktemp("uninterrupted")
    start = time.time()
    _run(work)
    return work, _digest(work), time.time() - start


def test_stages_produce_valid_data_dirs_with_features(reference):
    work, digest, _ = reference
    dirs = sorted({p.parent for p in (work / "data").rglob("feats.scp")})
    assert len(dirs) == 25  # asr 4, phones/keywords/intents/prosody/noisy 3 each, speakers 6
    for d in dirs:
        assert [i for i in validate(d) if i.severity == "error"] == [], d
        data = DataDir.load(d)
        frames = {u: int(v) for u, v in data.tables["utt2num_frames"].items()}
        assert set(frames) == set(data.utt2spk)
        utt = data.utt_ids[0]
        assert load_features(d, utt).shape == (frames[utt], 80)
        assert (d / "global_cmvn.ark").is_file() and (d / "cmvn.scp").is_file()
    assert any(k.startswith("fbank/asr_dev/raw_asr_dev.") for k in digest)


def test_rerun_is_a_no_op(reference):
    work, digest, _ = reference
    start = time.time()
    proc = _run(work)
    assert "corpus complete already" in proc.stderr
    assert "features complete already" in proc.stderr
    assert _digest(work) == digest
    assert time.time() - start < 30


@pytest.mark.parametrize("stage,wait_for", [(1, "wav"), (2, "fbank/log")])
def test_killed_run_resumes_byte_identical(reference, tmp_path, stage, wait_for):
    _, digest, _ = reference
    if stage == 2:  # corpus first, then kill during features
        _run(tmp_path, "--stop-stage", "1")
    proc = subprocess.Popen(
        _cmd(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.time() + 120
    target = tmp_path / ("data" if stage == 1 else "") / wait_for
    while time.time() < deadline and proc.poll() is None:
        if target.exists() and any(target.rglob("*")):
            time.sleep(0.5)  # let it get some way into the stage
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    _run(tmp_path)
    assert _digest(tmp_path) == digest


def test_stage3_pretrains_and_exports(reference):
    """Stage 3 through recipes/ssl.sh (a few updates; the learning itself is measured elsewhere)."""
    work = reference[0]
    small = "trainer.max_updates=3 trainer.save_every=3 trainer.progress_bar=false"
    _run(work, "--stage", "3", "--stop-stage", "3", "--ssl-set", small)
    upstream = work / "exp" / "ssl" / "hubert_tiny" / "iter1" / "upstream.pt"  # the default method
    assert not (work / "exp" / "ssl" / "hubert_tiny" / "iter2").exists()  # tiny: one iteration
    assert upstream.is_file() and (upstream.parent / ".export.done").is_file()
    proc = _run(work, "--stage", "3", "--stop-stage", "3", "--ssl-set", small)
    assert "pretraining done already" in proc.stderr  # rerun is a no-op


def test_bad_option_is_rejected(tmp_path):
    proc = subprocess.run(
        ["bash", str(RUN), "--no-such-option", "1"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0 and "--no-such-option" in proc.stderr


def test_stage3_takes_a_list_of_methods(reference):
    """--ssl-method apc,cpc: stage 3 pretrains and exports each (a few updates); a name with no
    config is one error line before anything runs."""
    work = reference[0]
    small = "trainer.max_updates=2 trainer.save_every=2 trainer.progress_bar=false"
    proc = _run(work, "--stage", "3", "--stop-stage", "3", "--ssl-method", "apc,cpc",
                "--ssl-set", small)  # fmt: skip
    for method in ("apc", "cpc"):
        assert (work / "exp" / "ssl" / f"{method}_tiny" / "upstream.pt").is_file()
        assert f"{method}: stage 3 took" in proc.stderr
    bad = subprocess.run(_cmd(work, "--stage", "3", "--stop-stage", "3", "--ssl-method",
                              "tera,bogus"), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 1 and "no conf/ssl/bogus_tiny.yaml" in bad.stderr
