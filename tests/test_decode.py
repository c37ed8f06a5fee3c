"""CTC decoding: greedy vs an argmax reference, beam search vs brute force, LM fusion vs greedy,
agreement with pyctcdecode, n-best rescoring, word timestamps and bad input.

The data: sentences from a small Markov chain over a word list, rendered as peaky CTC
log-posteriors with letter confusions (``simulate_ctc_emissions``), and a real 3-gram KenLM
estimated by lmplz from other sentences of the same chain.
"""

from __future__ import annotations

import itertools
import logging
import math

import jiwer
import numpy as np
import pytest
import torch
from conftest import require_lmplz
from decode_peer import build_pyctcdecode, simulate_ctc_emissions

from speechssl.asr.decode import (
    CTCDecoder,
    DecoderConfig,
    detect_kind,
    frames_to_seconds,
    rescore_nbest,
)
from speechssl.asr.lm import LN10, KenLM, build_arpa

require_lmplz()

WORDS = (
    "the a my cat cap dog dot sat sits ran bed bad red big pig pen pan map mat man men "
    "on in under near quickly slowly today tonight"
).split()
CHAR_TOKENS = ["<blank>", "|", "'", *"abcdefghijklmnopqrstuvwxyz"]
CONFUSABLE = {"a": "e", "e": "a", "i": "y", "o": "u", "u": "o", "b": "p", "p": "b", "d": "t",
              "t": "d", "m": "n", "n": "m", "s": "z", "g": "j"}  # fmt: skip
ALPHA, BETA = 0.8, 1.0


def markov_sentences(count: int, seed: int) -> list[str]:
    """Sentences from a fixed random second-order chain over WORDS (each word pair allows 3
    next words), so a 3-gram LM learns real structure that a 2-gram misses."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        words = [WORDS[int(rng.integers(3))], WORDS[int(rng.integers(len(WORDS)))]]
        for _ in range(int(rng.integers(2, 6))):
            pair = WORDS.index(words[-2]) * len(WORDS) + WORDS.index(words[-1])
            successors = np.random.default_rng(1000 + pair).choice(WORDS, 3, replace=False)
            words.append(str(successors[int(rng.integers(3))]))
        out.append(" ".join(words))
    return out


def sentencepiece_tokens() -> list[str]:
    """A sentencepiece-style vocabulary: each word is '▁' + its first two letters, then pairs."""
    pieces = sorted({p for w in WORDS for p in split_word(w)})
    return ["<blank>", "<unk>", *pieces]


def split_word(word: str) -> list[str]:
    return ["▁" + word[:2]] + [word[i : i + 2] for i in range(2, len(word), 2)]


def labelling(text: str, tokens: list[str]) -> list[int]:
    index = {t: i for i, t in enumerate(tokens)}
    if "|" in tokens:
        return [index[c] for c in "|".join(text.split())]
    return [index[p] for w in text.split() for p in split_word(w)]


def confusions(tokens: list[str]) -> dict[int, list[int]]:
    """Characters: the CONFUSABLE letters. Pieces: other pieces one letter away."""
    if "|" in tokens:
        index = {t: i for i, t in enumerate(tokens)}
        return {index[c]: [index[x] for x in alts] for c, alts in CONFUSABLE.items()}
    out = {}
    for i, a in enumerate(tokens):
        near = [j for j, b in enumerate(tokens) if j != i and len(a) == len(b) and a[0] == b[0]]
        near = [j for j in near if sum(x != y for x, y in zip(a, tokens[j])) == 1]
        if near and not a.startswith("<"):
            out[i] = near
    return out


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm")
    (out / "text").write_text("\n".join(markov_sentences(400, seed=1)) + "\n")
    for order in (2, 3, 4):
        build_arpa(out / "text", out / f"lm{order}.arpa", order=order, discount_fallback=True)
    return out


@pytest.fixture(scope="module")
def lm(lm_dir) -> KenLM:
    return KenLM(lm_dir / "lm3.arpa")


def make_data(tokens: list[str], count: int = 40, seed: int = 2, rate: float = 0.15):
    refs = markov_sentences(count, seed=seed)
    rng = np.random.default_rng(seed)
    labels = [labelling(r, tokens) for r in refs]
    logprobs = simulate_ctc_emissions(
        labels, len(tokens), rng, confusions=confusions(tokens), confusion_rate=rate
    )
    return refs, logprobs


@pytest.fixture(scope="module")
def char_data():
    return make_data(CHAR_TOKENS)


def argmax_collapse(lp: np.ndarray) -> list[int]:
    return [int(k) for k, _ in itertools.groupby(lp.argmax(axis=1)) if k != 0]


def test_detect_kind_and_frames_to_seconds():
    assert detect_kind(CHAR_TOKENS) == "character"
    assert detect_kind(sentencepiece_tokens()) == "sentencepiece"
    with pytest.raises(ValueError, match="kind="):
        detect_kind(["<blank>", "a", "b"])
    assert frames_to_seconds(50, stride_samples=320) == pytest.approx(1.0)


def test_greedy_matches_argmax_collapse(char_data):
    refs, logprobs = char_data
    decoder = CTCDecoder(CHAR_TOKENS)
    for lp in logprobs:
        hyp = decoder.greedy(torch.from_numpy(lp))
        expected = argmax_collapse(lp)
        assert hyp.tokens == expected
        text = "".join(CHAR_TOKENS[k] for k in expected).replace("|", " ")
        assert hyp.text == " ".join(text.split())
        assert hyp.am_score == pytest.approx(lp.max(axis=1).sum(dtype=np.float64), abs=1e-3)
        assert hyp.lm_score == 0.0 and hyp.num_words == len(hyp.text.split())
        assert [w.word for w in hyp.words] == hyp.text.split()


def test_beam_search_without_lm_finds_the_most_probable_labelling():
    """Tiny T and V: sum every one of the V^T paths into its labelling."""
    tokens = ["<blank>", "a", "b", "c"]
    config = DecoderConfig(
        beam=10_000, beta=0.0, beam_prune_logp=-math.inf, token_min_logp=-math.inf, nbest=5
    )
    decoder = CTCDecoder(tokens, config=config, kind="character")
    rng = np.random.default_rng(0)
    for _ in range(3):
        lp = torch.from_numpy(rng.normal(0, 1.5, (6, 4))).log_softmax(-1).numpy()
        totals: dict[tuple[int, ...], float] = {}
        for path in itertools.product(range(4), repeat=6):
            label = tuple(k for k, _ in itertools.groupby(path) if k != 0)
            logp = float(lp[np.arange(6), path].sum(dtype=np.float64))
            totals[label] = np.logaddexp(totals.get(label, -np.inf), logp)
        best = sorted(totals.items(), key=lambda kv: -kv[1])[:5]
        nbest = decoder.beam_search(lp)
        assert [tuple(h.tokens) for h in nbest] == [label for label, _ in best]
        for hyp, (_, logp) in zip(nbest, best):
            assert hyp.am_score == pytest.approx(logp, abs=1e-4)
            assert hyp.score == pytest.approx(hyp.am_score)


def test_special_tokens_merge_into_their_text():
    """A special token (``<x>``, no text) in the vocabulary: every one of the V^T paths summed
    into its *text* (the labelling without ``<x>``); the beam search's n-best texts and their
    am scores are those sums (``specials_as_blank``). Without it the search ranks labellings,
    so a text split over several labellings can lose to a less probable one."""
    tokens = ["<blank>", "a", "b", "<x>"]
    config = DecoderConfig(
        beam=10_000, beta=0.0, beam_prune_logp=-math.inf, token_min_logp=-math.inf, nbest=4
    )
    decoder = CTCDecoder(tokens, config=config, kind="character")
    rng = np.random.default_rng(1)
    for _ in range(3):
        logits = rng.normal(0, 1.5, (6, 4))
        logits[:, 3] += 1.0  # the special token takes real mass, as <unk> can
        lp = torch.from_numpy(logits).log_softmax(-1).numpy()
        totals: dict[str, float] = {}
        for path in itertools.product(range(4), repeat=6):
            label = [k for k, _ in itertools.groupby(path) if k != 0]
            text = "".join(tokens[k] for k in label if k != 3)
            logp = float(lp[np.arange(6), path].sum(dtype=np.float64))
            totals[text] = np.logaddexp(totals.get(text, -np.inf), logp)
        best = sorted(totals.items(), key=lambda kv: -kv[1])[:4]
        nbest = decoder.beam_search(lp)
        assert [h.text.replace(" ", "") for h in nbest] == [text for text, _ in best]
        for hyp, (_, logp) in zip(nbest, best):
            assert hyp.am_score == pytest.approx(logp, abs=1e-4)


def test_lm_fusion_beats_greedy(char_data, lm):
    refs, logprobs = char_data
    greedy = CTCDecoder(CHAR_TOKENS)
    beam = CTCDecoder(CHAR_TOKENS, lm, DecoderConfig(beam=16, alpha=ALPHA, beta=BETA))
    greedy_wer = jiwer.wer(refs, [greedy.greedy(lp).text for lp in logprobs])
    beam_wer = jiwer.wer(refs, [beam.beam_search(lp)[0].text for lp in logprobs])
    assert greedy_wer > 0.1  # the confusions make greedy decoding wrong often
    assert beam_wer < 0.5 * greedy_wer


def objective(text: str, lp: np.ndarray, lm: KenLM, config: DecoderConfig) -> float:
    """What both decoders maximise, for a text of CHAR_TOKENS: the full-sum CTC log-probability
    of its labelling + alpha * ln P_lm (+ unk_score * ln 10 per OOV word) + beta * #words."""
    labels = torch.tensor([labelling(text, CHAR_TOKENS)])
    am = -torch.nn.functional.ctc_loss(
        torch.from_numpy(lp)[:, None], labels, [len(lp)], [labels.shape[1]], reduction="sum"
    ).item()
    words = text.split()
    lm_score = lm.sentence_score(words) + config.unk_score * LN10 * sum(map(lm.is_oov, words))
    return am + config.alpha * lm_score + config.beta * len(words)


@pytest.mark.parametrize("kind", ["character", "sentencepiece"])
def test_agrees_with_pyctcdecode(kind, lm_dir, lm):
    """Same logits, LM, alpha, beta, beam and pruning: the same 1-best text (pyctcdecode with
    its end-of-utterance empty-word scoring fixed, see build_pyctcdecode); where they differ,
    ours is the better text by the objective both maximise (a search error of pyctcdecode)."""
    logging.getLogger("pyctcdecode").setLevel(logging.ERROR)
    tokens = CHAR_TOKENS if kind == "character" else sentencepiece_tokens()
    refs, logprobs = make_data(tokens, count=60, seed=3)
    config = DecoderConfig(beam=32, alpha=ALPHA, beta=BETA)
    ours = CTCDecoder(tokens, lm, config)
    theirs = build_pyctcdecode(tokens, lm_dir / "lm3.arpa", config)
    same = []
    for lp in logprobs:
        a = ours.beam_search(lp)[0].text
        b = theirs.decode_beams(lp, beam_width=config.beam, prune_history=False)[0][0]
        same.append(a == b)
        if a != b and kind == "character":
            assert objective(a, lp, lm, config) > objective(b, lp, lm, config)
    assert np.mean(same) >= 0.95, f"{kind}: ours and pyctcdecode agree on {np.mean(same):.0%}"


def test_nbest_scores_and_rescoring(char_data, lm, lm_dir):
    refs, logprobs = char_data
    # a 2-gram first pass, rescored with a 4-gram; a wide pruning window keeps alternatives
    # (peaky emissions leave few within -10)
    config = DecoderConfig(beam=16, alpha=ALPHA, beta=BETA, nbest=8, beam_prune_logp=-30.0)
    decoder = CTCDecoder(CHAR_TOKENS, lm_dir / "lm2.arpa", config)
    reranked, first_pass, second_pass = 0, [], []
    for lp in logprobs:
        nbest = decoder.beam_search(lp)
        assert len(nbest) > 1 and len({h.text for h in nbest}) == len(nbest)
        scores = [h.score for h in nbest]
        assert scores == sorted(scores, reverse=True)
        for h in nbest:
            assert h.score == pytest.approx(h.am_score + ALPHA * h.lm_score + BETA * h.num_words)
        # the same LM again reproduces the search's LM scores (boundaries, OOV, natural log)
        same = rescore_nbest(nbest, lm_dir / "lm2.arpa", ALPHA, BETA)
        assert [h.text for h in same] == [h.text for h in nbest]
        for a, b in zip(same, nbest):
            assert a.lm_score == pytest.approx(b.lm_score, abs=1e-4)
        rescored = rescore_nbest(nbest, lm_dir / "lm4.arpa", ALPHA, BETA)
        assert sorted(h.text for h in rescored) == sorted(h.text for h in nbest)
        for h in rescored:
            assert h.score == pytest.approx(h.am_score + ALPHA * h.lm_score + BETA * h.num_words)
        assert [h.score for h in rescored] == sorted((h.score for h in rescored), reverse=True)
        reranked += rescored[0].text != nbest[0].text
        first_pass.append(nbest[0].text)
        second_pass.append(rescored[0].text)
    assert reranked > 0
    assert jiwer.wer(refs, second_pass) < jiwer.wer(refs, first_pass)


def test_word_timestamps(char_data, lm):
    refs, logprobs = char_data
    decoder = CTCDecoder(CHAR_TOKENS, lm, DecoderConfig(beam=8, alpha=ALPHA, beta=BETA, nbest=3))
    for lp in logprobs[:10]:
        for hyp in [decoder.greedy(lp), *decoder.beam_search(lp)]:
            assert [w.word for w in hyp.words] == hyp.text.split()
            previous_end = 0
            for w in hyp.words:
                assert previous_end <= w.start_frame < w.end_frame <= len(lp)
                assert 0.0 < w.confidence <= 1.0
                previous_end = w.end_frame


def test_decode_batch_padding_and_processes(char_data, lm):
    refs, logprobs = char_data
    decoder = CTCDecoder(CHAR_TOKENS, lm, DecoderConfig(beam=8, alpha=ALPHA, beta=BETA))
    utts = logprobs[:4]
    single = [decoder.beam_search(lp)[0].text for lp in utts]
    padded = np.zeros((4, max(map(len, utts)), len(CHAR_TOKENS)), dtype=np.float32)
    padded[:] = np.log(1 / len(CHAR_TOKENS))  # padding that would decode to something
    for i, lp in enumerate(utts):
        padded[i, : len(lp)] = lp
    batch = decoder.decode_batch(torch.from_numpy(padded), lengths=[len(x) for x in utts])
    assert [n[0].text for n in batch] == single
    assert [n[0].text for n in decoder.decode_batch(utts, nj=2)] == single


def test_sentencepiece_and_phone_words():
    tokens = ["<blank>", "<unk>", "▁ca", "t", "▁sat", "▁"]
    decoder = CTCDecoder(tokens)
    # ▁ca t <unk> ▁sat ▁ ▁ca  ->  "cat sat ca" (the lone ▁ makes an empty word)
    path = [2, 3, 0, 1, 4, 4, 5, 2]
    lp = np.full((len(path), len(tokens)), -20.0, dtype=np.float32)
    lp[np.arange(len(path)), path] = 0.0
    lp -= np.logaddexp.reduce(lp, axis=1, keepdims=True)
    hyp = decoder.greedy(lp)
    assert hyp.text == "cat sat ca"
    assert [(w.start_frame, w.end_frame) for w in hyp.words] == [(0, 2), (4, 6), (7, 8)]
    phones = CTCDecoder(["<blank>", "k", "ae", "t"], kind="phones")
    logits = 10.0 * torch.nn.functional.one_hot(torch.tensor([1, 0, 1, 1, 2, 3]), 4)
    assert phones.greedy(logits.log_softmax(-1)).text == "k k ae t"


def test_bad_input_raises_clear_errors(lm):
    decoder = CTCDecoder(CHAR_TOKENS, lm)
    good = torch.randn(20, len(CHAR_TOKENS)).log_softmax(-1)
    with pytest.raises(ValueError, match="V = 30 .* 29 tokens"):
        decoder.beam_search(torch.randn(20, 30).log_softmax(-1))
    nan = good.clone()
    nan[5, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN .* frame 5"):
        decoder.greedy(nan)
    with pytest.raises(ValueError, match="no frames"):
        decoder.beam_search(np.zeros((0, len(CHAR_TOKENS)), dtype=np.float32))
    with pytest.raises(ValueError, match="log_softmax"):
        decoder.beam_search(torch.randn(20, len(CHAR_TOKENS)))
    with pytest.raises(ValueError, match=r"\(T, V\)"):
        decoder.greedy(good[None])
    with pytest.raises(ValueError, match="utterance 1"):
        decoder.decode_batch([good, good[:0]])
    with pytest.raises(ValueError, match="distinct"):
        CTCDecoder(["<blank>", "a", "a"], kind="character")
