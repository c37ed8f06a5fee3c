"""Shared fixtures: small data directories with real (generated) audio."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# Triton picks interpreted or compiled at each @triton.jit, when its module is imported. Without a
# GPU every kernel test runs interpreted, so the mode is set here, before any test module can
# import triton (one that imported torch._dynamo at collection broke every kernel test after it).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from speechssl.data.audio import write_wav
from speechssl.data.kaldi import write_data_dir

# bench code the tests check against (bench/decode_peer.py), importable as a top-level module;
# appended, so it shadows nothing
sys.path.append(str(Path(__file__).resolve().parents[1] / "bench"))


def make_data_dir(root: Path, speakers: int = 3, per_speaker: int = 4, seed: int = 0) -> Path:
    """A data dir of chirps + noise (distinct per utterance), 16 kHz, 0.3-0.9 s long."""
    rng = np.random.default_rng(seed)
    wav_scp, utt2spk, text, utt2dur = {}, {}, {}, {}
    for s in range(speakers):
        spk = f"spk{s:02d}"
        for u in range(per_speaker):
            utt = f"{spk}-utt{u:03d}"
            n = int(rng.integers(4800, 14400))
            t = np.arange(n) / 16000
            f0 = 100 + 40 * s + 10 * u
            wav = 0.3 * np.sin(2 * np.pi * f0 * t * (1 + t)) + 0.01 * rng.standard_normal(n)
            write_wav(root / "wav" / f"{utt}.wav", wav)
            wav_scp[utt] = f"wav/{utt}.wav"
            utt2spk[utt] = spk
            text[utt] = f"word{u} speaker{s}"
            utt2dur[utt] = n / 16000
    write_data_dir(root, wav_scp, utt2spk, text, {"utt2dur": utt2dur})
    return root


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return make_data_dir(tmp_path / "data")


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic corpus at test scale (every subset; rendered once per test session, ~20 s).
    Read-only for tests: copy a data dir before changing it."""
    from speechssl.data.synth import build_corpus

    out = tmp_path_factory.mktemp("synth") / "data"
    build_corpus(out, seed=0, scale="test", nj=2)
    return out


@pytest.fixture(scope="session")
def toy_asr_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``model.pt`` of a tiny CTC model trained on toy tone-spelled words (tests/toy_asr.py),
    trained once per session on one thread; its data dir is ``<model>/../../data``."""
    import torch
    from toy_asr import train_toy_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_toy_model(tmp_path_factory.mktemp("toy_asr"))
    finally:
        torch.set_num_threads(threads)


def require_lmplz() -> None:
    """Skip when KenLM's lmplz is not built (a bare `pytest` without tools/install.sh), but
    fail under CI (`CI` set), where tools/test.sh always builds it: a broken KenLM build must not
    turn into silently skipped LM tests."""
    import os

    from speechssl.asr.lm import find_kenlm_program

    try:
        find_kenlm_program("lmplz")
    except FileNotFoundError as e:
        if os.environ.get("CI"):
            pytest.fail(f"{e} (CI builds it with tools/install_kenlm.sh)", pytrace=False)
        pytest.skip(str(e), allow_module_level=True)


def require_module(name: str):
    """``import name``; skip (naming the module) when it is missing from a bare environment,
    but fail under CI (``CI`` set): tools/test.sh installs every dependency setup.cfg lists
    (kenlm, and transformers in the dev extra), so a missing one is a broken install, not a
    reason to skip."""
    import importlib
    import os

    try:
        return importlib.import_module(name)
    except ImportError as e:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not importable ({e}); tools/install.sh installs it", False)
        pytest.skip(f"{name} is not installed ({e})", allow_module_level=True)
