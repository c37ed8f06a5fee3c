"""``speechssl asr-decode``: decode a data dir greedy and with an LM, tune (alpha, beta) on it,
rescore the n-best with a second LM, write text/nbest/ctm and score; reruns reuse the cached
log-probabilities."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require_lmplz
from toy_asr import WORDS, random_sentence, utterance

from speechssl.asr.decode import DecoderConfig
from speechssl.asr.lm import KenLM, build_arpa
from speechssl.cli import main as speechssl_main
from speechssl.data.audio import write_wav
from speechssl.data.kaldi import read_table, write_data_dir

require_lmplz()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def test_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A toy test set whose sentences follow a fixed word order the LM knows, with extra noise
    so the acoustic model alone makes errors; a 2-gram and a 3-gram LM of those sentences."""
    root = tmp_path_factory.mktemp("decode")
    rng = np.random.default_rng(1)
    grammar = [WORDS[i : i + 3] for i in range(len(WORDS) - 2)]  # word trigrams in order
    wav_scp, utt2spk, text = {}, {}, {}
    for i in range(12):
        words = list(grammar[i % len(grammar)])
        wav = utterance(words, seed=50 + i)
        wav = wav + 0.03 * rng.standard_normal(len(wav)).astype(np.float32)
        utt = f"t0-u{i:02d}"
        write_wav(root / "data" / f"{utt}.wav", wav)
        wav_scp[utt], utt2spk[utt], text[utt] = f"{utt}.wav", "t0", " ".join(words)
    write_data_dir(root / "data", wav_scp, utt2spk, text)
    lm_text = root / "lm.txt"
    lines = [" ".join(g) for g in grammar] * 20 + [" ".join(random_sentence(rng)) for _ in range(5)]
    lm_text.write_text("\n".join(lines) + "\n")
    lm2 = build_arpa(lm_text, root / "lm2.arpa", order=2)
    lm3 = build_arpa(lm_text, root / "lm3.arpa", order=3)
    return root / "data", lm2, lm3


def _wer(decode_dir: Path) -> float:
    return json.loads((decode_dir / "summary.json").read_text())["wer"]


def test_decode_greedy_beam_tuned_and_rescored(toy_asr_model: Path, test_set, tmp_path: Path):
    data, lm2, lm3 = test_set
    base = ["asr-decode", "--model", str(toy_asr_model), "--data", str(data)]
    assert speechssl_main([*base, "--out", str(tmp_path / "greedy"), "--mode", "greedy"]) == 0
    greedy = tmp_path / "greedy"
    for name in ("text", "nbest.jsonl", "ctm", "wer.txt", "summary.json", "per_utt.txt"):
        assert (greedy / name).is_file(), name
    assert set(read_table(greedy / "text")) == set(read_table(data / "text"))

    tuned = tmp_path / "beam"
    args = [*base, "--out", str(tuned), "--lm", str(lm2), "--beam", "16", "--nbest", "5"]
    assert speechssl_main([*args, "--tune-alpha", "0.5,1.5", "--tune-beta", "0,2"]) == 0
    settings = json.loads((tuned / "decode.json").read_text())
    assert len(settings["grid"]) == 4
    best = min(settings["grid"], key=lambda r: r["wer"])
    assert _wer(tuned) == pytest.approx(best["wer"])
    assert _wer(tuned) <= _wer(greedy)  # the LM knows the word order; greedy does not

    nbest = [json.loads(line) for line in (tuned / "nbest.jsonl").read_text().splitlines()]
    a, b = settings["alpha"], settings["beta"]
    for entry in nbest:
        assert 1 <= len(entry["nbest"]) <= 5
        scores = [h["score"] for h in entry["nbest"]]
        assert scores == sorted(scores, reverse=True)
        for h in entry["nbest"]:
            total = h["am_score"] + a * h["lm_score"] + b * h["num_words"]
            assert h["score"] == pytest.approx(total, abs=1e-3)
    for line in (tuned / "ctm").read_text().splitlines():
        utt, _, start, dur, word, conf = line.split()
        assert (
            float(start) >= 0
            and float(dur) >= 0
            and set(word) <= {"a", "b"}
            and 0 <= float(conf) <= 1
        )

    # rescoring with the first-pass LM itself changes nothing; with the 3-gram, the n-best is
    # re-ranked by am + alpha * lm3 + beta * words, the LM score being the 3-gram's own
    weights = ["--weights", str(tuned / "decode.json")]
    args = [*base, "--lm", str(lm2), "--beam", "16", "--nbest", "5", *weights]
    assert speechssl_main([*args, "--out", str(tmp_path / "same"), "--rescore-lm", str(lm2)]) == 0
    assert read_table(tmp_path / "same/text") == read_table(tuned / "text")
    rescored = tmp_path / "rescored"
    assert speechssl_main([*args, "--out", str(rescored), "--rescore-lm", str(lm3)]) == 0
    assert json.loads((rescored / "decode.json").read_text())["rescore_lm"] == str(lm3)
    lm = KenLM(lm3)
    for line in (rescored / "nbest.jsonl").read_text().splitlines():
        hyps = json.loads(line)["nbest"]
        assert [h["score"] for h in hyps] == sorted((h["score"] for h in hyps), reverse=True)
        for h in hyps:
            words = h["text"].split()
            oov = sum(lm.is_oov(w) for w in words)  # each OOV word also pays unk_score (log10)
            expected = lm.sentence_score(words) + oov * DecoderConfig.unk_score * math.log(10)
            assert h["lm_score"] == pytest.approx(expected, abs=1e-3)
            total = h["am_score"] + a * h["lm_score"] + b * h["num_words"]
            assert h["score"] == pytest.approx(total, abs=1e-3)


def test_rescoring_weights_tuned_on_nbest(toy_asr_model: Path, test_set, tmp_path: Path):
    data, lm2, lm3 = test_set
    out = tmp_path / "rescore_tuned"
    args = ["asr-decode", "--model", str(toy_asr_model), "--data", str(data), "--out", str(out)]
    args += ["--lm", str(lm2), "--alpha", "0.5", "--beta", "1", "--nbest", "8"]
    assert speechssl_main([*args, "--rescore-lm", str(lm3), "--tune-alpha", "0.3,1,2"]) == 0
    settings = json.loads((out / "decode.json").read_text())
    assert (settings["alpha"], settings["beta"]) == (0.5, 1.0)  # the first pass is not tuned
    grid = settings["rescore_grid"]
    assert len(grid) == 3 and _wer(out) == pytest.approx(min(r["wer"] for r in grid))
    best = min(grid, key=lambda r: (r["wer"], r["alpha"], r["beta"]))
    assert settings["rescore_alpha"] == best["alpha"]
    again = tmp_path / "again"  # --weights carries the rescoring weights to another decode
    args2 = ["asr-decode", "--model", str(toy_asr_model), "--data", str(data), "--out", str(again)]
    args2 += ["--lm", str(lm2), "--nbest", "8", "--rescore-lm", str(lm3)]
    assert speechssl_main([*args2, "--weights", str(out / "decode.json")]) == 0
    assert read_table(again / "text") == read_table(out / "text")


def test_logprobs_cache_is_reused_and_invalidated(toy_asr_model: Path, test_set, tmp_path):
    data, _, _ = test_set
    out = tmp_path / "dec"
    args = ["asr-decode", "--model", str(toy_asr_model), "--data", str(data), "--out", str(out)]
    assert speechssl_main([*args, "--mode", "greedy"]) == 0
    cache = out / "logprobs.pt"
    first = cache.stat().st_mtime_ns
    assert speechssl_main([*args, "--mode", "greedy"]) == 0
    assert cache.stat().st_mtime_ns == first  # reused, not recomputed
    other = tmp_path / "data2"
    shutil.copytree(data, other)
    wav_scp = read_table(other / "wav.scp")
    (other / "wav.scp").write_text(
        "".join(f"{u} {p}\n" for u, p in list(wav_scp.items())[:3]), encoding="utf-8"
    )
    for name in ("text", "utt2spk", "spk2utt", "utt2dur"):
        (other / name).unlink(missing_ok=True)
    (other / "utt2spk").write_text("".join(f"{u} t0\n" for u in list(wav_scp)[:3]))
    (other / "spk2utt").write_text("t0 " + " ".join(list(wav_scp)[:3]) + "\n")
    out2 = ["asr-decode", "--model", str(toy_asr_model), "--data", str(other), "--out", str(out)]
    assert speechssl_main([*out2, "--mode", "greedy"]) == 0
    assert len(read_table(out / "text")) == 3  # a changed wav.scp recomputes


def test_decode_errors(toy_asr_model: Path, test_set, tmp_path: Path, capsys):
    data, _, _ = test_set
    args = ["asr-decode", "--model", str(toy_asr_model), "--data", str(data)]
    assert speechssl_main([*args, "--out", str(tmp_path / "x"), "--tune-alpha", "1"]) == 1
    assert "--tune-alpha needs --lm" in capsys.readouterr().err
    bad = ["asr-decode", "--model", str(tmp_path / "none"), "--data", str(data)]
    assert speechssl_main([*bad, "--out", str(tmp_path / "y")]) == 1
    assert "none" in capsys.readouterr().err
