"""`speechssl pseudo-label`: n-best fusion and word voting against hand-computed answers, each
filter's count and the pseudo-label WER of what it keeps (jiwer on the references), and the
written data dir."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jiwer
import pytest
from conftest import make_data_dir

from speechssl.asr.pseudo_label import (
    FilterConfig,
    Hyp,
    apply_filters,
    fuse,
    is_looping,
    vote,
)
from speechssl.cli import main
from speechssl.data.kaldi import DataDir, read_table


def test_fusion_sums_posteriors_over_teachers():
    # teacher 1: softmax([0, -1]) = (0.731, 0.269); teacher 2: softmax([0, -0.5]) = (0.622, 0.378)
    t1 = [Hyp("a b", 0.0, 2), Hyp("a c", -1.0, 2)]
    t2 = [Hyp("a c", 0.0, 2), Hyp("a b", -0.5, 2)]
    text, conf = fuse([t1, t2])
    p1 = 1 / (1 + math.exp(-1.0))
    p2 = 1 / (1 + math.exp(-0.5))
    # "a b": p1 + (1 - p2) = 0.731 + 0.378; "a c": (1 - p1) + p2 = 0.269 + 0.622
    assert text == "a b" and conf == pytest.approx((p1 + 1 - p2) / 2)
    assert fuse([t1, t2], temperature=100.0)[0] == "a b"  # flat posteriors: still summed


def test_vote_takes_the_majority_per_slot():
    # pivot "the cat sat"; teachers: one agrees, one substitutes cat->hat, one deletes "sat"
    # and inserts "down" at the end; majority keeps "the cat sat", "down" loses 1 of 3
    text, conf = vote("the cat sat", ["the cat sat", "the hat sat", "the cat down"])
    assert text == "the cat sat"
    # shares: the 3/3, cat 2/3, sat 2/3 (third teacher's "down" substitutes "sat")
    assert conf == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    text, _ = vote("a b", ["a x b", "a x b", "a b"])  # an insertion most teachers made
    assert text == "a x b"


def test_looping():
    assert is_looping("go go go home", 1, 3) and not is_looping("go go home", 1, 3)
    assert is_looping("a b a b a b", 2, 3) and not is_looping("a b c a b", 2, 3)


def test_each_filter_reports_what_it_removed_and_the_wer_kept():
    refs = {f"u{i}": "one two three" for i in range(10)}
    labels = {f"u{i}": ("one two three", 0.1 * i) for i in range(10)}
    labels["u0"] = ("", 0.0)  # empty
    labels["u1"] = ("one two three four five six seven eight nine ten", 0.9)  # 10 words in 1 s
    labels["u2"] = ("one one one two", 0.5)  # loops
    labels["u3"] = ("one two tree", 0.05)  # one error, the lowest confidence left
    durations = {u: 1.0 for u in refs}
    cfg = FilterConfig(min_wps=0.5, max_wps=6.0, loop_ngram=1, loop_count=3, drop_lowest=20.0)
    kept, report = apply_filters(labels, durations, cfg, refs)
    steps = {r["step"]: r for r in report}
    assert [r["step"] for r in report] == ["combined", "empty", "length", "looping", "confidence"]
    assert [steps[s]["removed"] for s in ("empty", "length", "looping")] == [1, 1, 1]
    assert steps["confidence"]["removed"] == 1 and "u3" not in kept  # 20% of the 7 left: 1
    assert set(kept) == {f"u{i}" for i in range(4, 10)}
    # WER of what each step keeps, recomputed with jiwer
    all_hyps = [labels[u][0] for u in sorted(refs)]
    assert steps["combined"]["wer"] == pytest.approx(
        100 * jiwer.wer([refs[u] for u in sorted(refs)], all_hyps)
    )
    assert steps["confidence"]["wer"] == 0.0
    looping = [u for u in sorted(refs) if u not in ("u0", "u1", "u2")]
    assert steps["looping"]["wer"] == pytest.approx(
        100 * jiwer.wer([refs[u] for u in looping], [labels[u][0] for u in looping])
    )


def _decode_dir(path: Path, nbest: dict[str, list[tuple[str, float]]]) -> Path:
    path.mkdir(parents=True)
    lines = [
        json.dumps({"utt": u, "nbest": [{"text": t, "score": s, "num_words": len(t.split())}
                                        for t, s in hyps]})
        for u, hyps in nbest.items()
    ]  # fmt: skip
    (path / "nbest.jsonl").write_text("\n".join(lines) + "\n")
    return path


def test_command_writes_a_pseudo_labelled_data_dir(tmp_path, capsys):
    data = make_data_dir(tmp_path / "data", speakers=2, per_speaker=3)
    refs = read_table(data / "text")
    utts = sorted(refs)
    t1 = {u: [(refs[u], -1.0), ("word0 wrong", -3.0)] for u in utts}
    t2 = {u: [(refs[u], -2.0)] for u in utts}
    t1[utts[0]] = [("", -0.5)]  # teacher 1 outputs nothing here; teacher 2 the reference
    d1, d2 = _decode_dir(tmp_path / "t1", t1), _decode_dir(tmp_path / "t2", t2)
    out = tmp_path / "pseudo"
    argv = ["pseudo-label", "--data", str(data), "--teacher", str(d1), "--teacher", str(d2)]
    argv += ["--out", str(out), "--drop-lowest", "0", "--max-wps", "20"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "empty" in printed and "pseudo-label WER" in printed
    written = DataDir.load(out)
    assert written.text == refs  # fusion of the two teachers recovers every reference
    weights = read_table(out / "utt2weight")
    # utts[0]: teacher 1's only hypothesis "" (posterior 1) vs teacher 2's reference (1): a
    # tie at 1 each, broken by text order; the reference wins ("" < "word...") -> weight 0.5
    assert float(weights[utts[0]]) == pytest.approx(0.5)
    report = json.loads((out / "pseudo_label.json").read_text())
    assert report["steps"][0]["wer"] == 0.0
    for utt in utts:  # the audio still resolves from the new folder
        assert len(written.load_audio(utt)) > 0

    bad = tmp_path / "t3"
    bad.mkdir()
    assert main(argv[:3] + ["--teacher", str(bad), "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "nbest.jsonl: missing" in err and "asr-decode" in err


def _logprobs(path: Path, utts: list[str], frames: int, tokens: list[str], seed: int) -> dict:
    import torch

    gen = torch.Generator().manual_seed(seed)
    logp = {u: torch.randn(frames, len(tokens), generator=gen).log_softmax(-1) for u in utts}
    torch.save({"key": {}, "logprobs": logp, "tokens": tokens, "stride": 480}, path / "logprobs.pt")
    return logp


def test_soft_targets_average_the_teachers_posteriors(tmp_path, capsys):
    import numpy as np
    import torch

    data = make_data_dir(tmp_path / "data", speakers=2, per_speaker=2)
    refs = read_table(data / "text")
    utts = sorted(refs)
    tokens = ["<blank>", "|", "a", "b"]
    d1 = _decode_dir(tmp_path / "t1", {u: [(refs[u], -1.0)] for u in utts})
    d2 = _decode_dir(tmp_path / "t2", {u: [(refs[u], -1.5)] for u in utts})
    l1, l2 = _logprobs(d1, utts, 7, tokens, 0), _logprobs(d2, utts, 7, tokens, 1)
    out = tmp_path / "pseudo"
    argv = ["pseudo-label", "--data", str(data), "--teacher", str(d1), "--teacher", str(d2)]
    argv += ["--out", str(out), "--drop-lowest", "0", "--max-wps", "20", "--soft-targets"]
    assert main(argv) == 0
    saved = torch.load(out / "soft_targets.pt", weights_only=True)
    assert saved["tokens"] == tokens and sorted(saved["posteriors"]) == utts
    for u in utts:  # numpy's mean of the two teachers' probabilities
        want = (np.exp(l1[u].numpy()) + np.exp(l2[u].numpy())) / 2
        np.testing.assert_allclose(saved["posteriors"][u].float().numpy(), want, atol=1e-3)
    _logprobs(d2, utts, 7, ["<blank>", "|", "a", "c"], 1)  # another vocabulary
    assert main(argv[:-3] + ["--out", str(tmp_path / "p2"), "--soft-targets"]) == 1
    assert "tokens or frame rate differ" in capsys.readouterr().err


def _softmax(scores: list[float]) -> list[float]:
    z = sum(math.exp(s) for s in scores)
    return [math.exp(s) / z for s in scores]


def test_multi_target_adds_the_nbest_alternatives_with_their_posteriors(tmp_path, capsys):
    data = make_data_dir(tmp_path / "data", speakers=2, per_speaker=2)
    refs = read_table(data / "text")
    utts = sorted(refs)
    loop = "word2 word2 word2 word2 word2"  # a looping alternative is never a target
    t1 = {u: [(refs[u], 0.0), ("word0 wrong", -1.0), (loop, -1.5), ("word1 other", -2.0)] for u in utts}  # fmt: skip
    t2 = {u: [(refs[u], 0.0), ("word0 wrong", -0.5)] for u in utts}
    d1, d2 = _decode_dir(tmp_path / "t1", t1), _decode_dir(tmp_path / "t2", t2)
    out = tmp_path / "pseudo"
    argv = ["pseudo-label", "--data", str(data), "--teacher", str(d1), "--teacher", str(d2)]
    argv += ["--out", str(out), "--drop-lowest", "0", "--max-wps", "20", "--multi-target", "3"]
    assert main(argv) == 0
    assert "multi-target: 8 n-best alternatives" in capsys.readouterr().out
    p1, p2 = _softmax([0.0, -1.0, -1.5, -2.0]), _softmax([0.0, -0.5])
    written = DataDir.load(out)
    weights = {u: float(w) for u, w in read_table(out / "utt2weight").items()}
    assert sorted(written.utt_ids) == sorted(utts + [f"{u}-nb{k}" for u in utts for k in (2, 3)])
    for u in utts:
        assert written.text[u] == refs[u] and weights[u] == pytest.approx((p1[0] + p2[0]) / 2)
        assert written.text[f"{u}-nb2"] == "word0 wrong"
        assert weights[f"{u}-nb2"] == pytest.approx((p1[1] + p2[1]) / 2, rel=1e-5)
        assert written.text[f"{u}-nb3"] == "word1 other"  # the loop skipped
        assert weights[f"{u}-nb3"] == pytest.approx(p1[3] / 2, rel=1e-5)
        assert written.utt2spk[f"{u}-nb2"] == written.utt2spk[u]
        assert (written.load_audio(f"{u}-nb3") == written.load_audio(u)).all()

    # one teacher, --combine best: the weight is the 1-best's n-best posterior, a probability
    # (not the length-normalised score that ranks the confidence cut, which is negative)
    best = tmp_path / "best"
    argv = ["pseudo-label", "--data", str(data), "--teacher", str(d1), "--combine", "best"]
    assert main(argv + ["--out", str(best), "--drop-lowest", "0", "--max-wps", "20"]) == 0
    for u, w in read_table(best / "utt2weight").items():
        assert float(w) == pytest.approx(p1[0], rel=1e-5), u


def test_sample_ensemble_keeps_every_teachers_label(tmp_path, capsys):
    data = make_data_dir(tmp_path / "data", speakers=2, per_speaker=2)
    refs = read_table(data / "text")
    utts = sorted(refs)
    t1 = {u: [(refs[u], 0.0), ("word0 wrong", -1.0)] for u in utts}
    t2 = {u: [("word1 other", 0.0), (refs[u], -0.2)] for u in utts}
    t2[utts[0]] = []  # teacher 2 has no hypothesis here
    d1, d2 = _decode_dir(tmp_path / "t1", t1), _decode_dir(tmp_path / "t2", t2)
    out = tmp_path / "pseudo"
    argv = ["pseudo-label", "--data", str(data), "--teacher", str(d1), "--teacher", str(d2)]
    argv += ["--out", str(out), "--drop-lowest", "0", "--max-wps", "20", "--combine", "sample"]
    assert main(argv) == 0
    fusion = tmp_path / "fusion"
    assert main(argv[:-1] + ["fusion"] + ["--out", str(fusion)]) == 0
    assert read_table(out / "text") == read_table(fusion / "text")  # the filters' label
    assert read_table(out / "utt2weight") == read_table(fusion / "utt2weight")
    assert read_table(out / "utt2text1") == refs
    second = read_table(out / "utt2text2")
    assert second[utts[0]] == "" and all(second[u] == "word1 other" for u in utts[1:])
