"""KenLM language models: lmplz/build_binary wrappers, natural-log scoring, ``speechssl lm``."""

from __future__ import annotations

import logging
import math

import kenlm
import numpy as np
import pytest
from conftest import require_lmplz

from speechssl.asr.lm import (
    LN10,
    KenLM,
    build_arpa,
    build_binary,
    find_kenlm_program,
    perplexity,
    read_arpa_unigrams,
)
from speechssl.cli import command_main

main = command_main("lm")  # speechssl lm ARGV

require_lmplz()

SUBJECTS = ["the cat", "a dog", "my friend", "the teacher", "her brother"]
VERBS = ["saw", "likes", "found", "painted", "called"]
OBJECTS = ["the house", "a red car", "the old garden", "my sister", "the window"]


def sentences(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [
        f"{SUBJECTS[rng.integers(5)]} {VERBS[rng.integers(5)]} {OBJECTS[rng.integers(5)]}"
        for _ in range(count)
    ]


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "text"
    path.write_text("\n".join(sentences(60)) + "\n")
    return path


@pytest.fixture(scope="module")
def arpa(text):
    return build_arpa(text, text.parent / "lm.arpa", order=3)


def ngram_counts(arpa_path) -> dict[int, int]:
    counts = {}
    for line in arpa_path.read_text().splitlines():
        if line.startswith("ngram "):
            order, count = line.split()[1].split("=")
            counts[int(order)] = int(count)
        elif line.startswith("\\1-grams"):
            break
    return counts


def test_build_arpa_order_and_discount_fallback(text, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="speechssl.asr.lm"):
        arpa = build_arpa(text, tmp_path / "lm4.arpa", order=4)
    assert "--discount_fallback" in caplog.text  # small artificial text: lmplz needed it
    assert sorted(ngram_counts(arpa)) == [1, 2, 3, 4]
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left nothing behind
    with pytest.raises(ValueError, match=f"lmplz failed on {text}.*discount"):
        build_arpa(text, tmp_path / "no_fallback.arpa", order=3, discount_fallback=False)
    assert not (tmp_path / "no_fallback.arpa").exists()
    pruned = build_arpa(text, tmp_path / "pruned.arpa", order=3, prune=[0, 1, 1])
    assert ngram_counts(pruned)[3] < ngram_counts(arpa)[3]


def test_scores_are_natural_log_and_add_up(arpa):
    lm = KenLM(arpa)
    reference = kenlm.Model(str(arpa))
    assert lm.order == 3 and lm.vocab >= {"cat", "painted", "window"}
    for sentence in sentences(10, seed=1) + ["the cat saw zebras"]:
        words = sentence.split()
        state, total = lm.begin_state(), 0.0
        for word in words:
            logp, state = lm.score(state, word)
            assert logp < 0
            total += logp
        total += lm.end_score(state)
        assert lm.sentence_score(words) == pytest.approx(total, abs=1e-5)
        assert total == pytest.approx(reference.score(sentence) * LN10, abs=1e-4)
        no_boundary = reference.score(sentence, bos=False, eos=False) * LN10
        assert lm.sentence_score(words, bos=False, eos=False) == pytest.approx(
            no_boundary, abs=1e-4
        )
    assert lm.is_oov("zebras") and not lm.is_oov("cat")


def test_seen_sentences_beat_shuffled_ones(arpa):
    lm = KenLM(arpa)
    rng = np.random.default_rng(2)
    for sentence in sentences(10):
        words = sentence.split()
        shuffled = list(words)
        while shuffled == words:
            rng.shuffle(shuffled)
        assert lm.sentence_score(words) > lm.sentence_score(shuffled)


def test_binary_matches_arpa(arpa, tmp_path):
    binary = build_binary(arpa, tmp_path / "lm.bin")
    lm_bin, lm_arpa = KenLM(binary), KenLM(arpa)
    assert lm_bin.order == 3 and lm_bin.vocab is None  # no sibling lm.arpa in tmp_path
    for sentence in sentences(5, seed=3):
        words = sentence.split()
        assert lm_bin.sentence_score(words) == pytest.approx(
            lm_arpa.sentence_score(words), abs=1e-4
        )
    # beside its ARPA (as `speechssl lm build --binary` writes them) it finds the vocabulary
    assert KenLM(build_binary(arpa, arpa.with_suffix(".bin"))).vocab == read_arpa_unigrams(arpa)


def test_main_build_and_score(text, tmp_path, capsys):
    out = tmp_path / "exp_lm"
    assert main(["build", "--text", str(text), "--order", "3", "--binary", "--out", str(out)]) == 0
    assert (out / "lm.arpa").is_file() and (out / "lm.bin").is_file()
    test = tmp_path / "test"
    test.write_text("the cat saw the house\nmy friend painted a purple car\n")
    assert main(["score", "--lm", str(out / "lm.bin"), "--text", str(test)]) == 0
    printed = capsys.readouterr().out
    stats = perplexity(KenLM(out / "lm.arpa"), test)
    lines = [line.split() for line in test.read_text().splitlines()]
    total = sum(KenLM(out / "lm.arpa").sentence_score(words) for words in lines)
    # per word, counting each sentence's </s> as a word
    assert stats["perplexity"] == pytest.approx(math.exp(-total / (11 + 2)))
    assert stats["oov"] == 1  # purple
    assert f"perplexity {stats['perplexity']:.2f}" in printed and "1 OOV" in printed


def test_errors_name_the_file(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert main(["build", "--text", str(empty), "--out", str(tmp_path / "x")]) == 1
    assert f"error: LM training text {empty} is empty" in capsys.readouterr().err
    missing = tmp_path / "missing.arpa"
    assert main(["score", "--lm", str(missing), "--text", str(empty)]) == 1
    assert str(missing) in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="install_kenlm.sh"):
        find_kenlm_program("lmplz", tmp_path / "no-such-lmplz")
    bad = tmp_path / "bad.arpa"
    bad.write_text("this is not a language model\n")
    with pytest.raises(ValueError, match=str(bad)):
        KenLM(bad)
