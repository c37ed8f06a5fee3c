"""The batched (GPU) CTC prefix beam search and its tensor n-gram LM, on the CPU.

The references: the CPU prefix search of ``speechssl.asr.prefix_search`` (same n-best
labellings, scores within 1e-3) on random logits, simulated emissions and a trained model's
log-probabilities; KenLM's own scores through the ``kenlm`` module, and a hand-worked ARPA, for
the tensor LM. No GPU here: the same code runs on ``cuda`` (the last test, skipped without one).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import require_lmplz
from decode_peer import simulate_ctc_emissions
from test_decode import (
    CHAR_TOKENS,
    labelling,
    make_data,
    markov_sentences,
    sentencepiece_tokens,
)

from speechssl.asr.batch_search import BatchPrefixSearch
from speechssl.asr.decode import CTCDecoder, DecoderConfig
from speechssl.asr.lm import LN10, KenLM, build_arpa, build_binary
from speechssl.asr.ngram_tensor import TensorNgramLM

require_lmplz()


@pytest.fixture(scope="module")
def arpas(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm")
    (out / "text").write_text("\n".join(markov_sentences(400, seed=1)) + "\n")
    return {
        order: build_arpa(
            out / "text", out / f"lm{order}.arpa", order=order, discount_fallback=True
        )
        for order in (2, 3, 4)
    }


def cpu_reference(decoder: CTCDecoder, lp: np.ndarray):
    """The CPU search's final beams as (score, labelling), best first."""
    return [(beam[0], beam[4]) for beam in decoder.prefix_beams(lp)]


def assert_same_beams(
    decoder: CTCDecoder, utts: list[torch.Tensor], device: str = "cpu", static: bool = False
):
    """Every utterance: the batched search's beams = the CPU search's (ids, order, scores).
    ``static``: the fixed-shape steps a CUDA graph replays (here run eagerly)."""
    lengths = torch.tensor([len(u) for u in utts])
    padded = torch.nn.utils.rnn.pad_sequence(utts, batch_first=True)
    got = BatchPrefixSearch(decoder, device)(padded.to(device), lengths, static=static)
    compared = 0
    for i, u in enumerate(utts):
        ref = cpu_reference(decoder, u.numpy())
        assert [h.tokens for h in got[i]] == [r[1] for r in ref], f"utterance {i}"
        gaps = [abs(h.score - r[0]) for h, r in zip(got[i], ref)]
        assert max(gaps) < 1e-3, f"utterance {i}: scores differ by {max(gaps):.2e}"
        compared += len(ref)
    return compared


def random_logprobs(count: int, vocab: int, seed: int, blank_bias: float = 2.0):
    """Random frames (T from 1 to 80), peaky enough that beams branch and merge."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        t = int(torch.randint(1, 80, (1,), generator=g))
        x = torch.randn(t, vocab, generator=g) * 3
        x[:, 0] += blank_bias
        out.append(x.log_softmax(-1))
    return out


def test_tensor_lm_matches_hand_worked_backoff(tmp_path):
    """A 2-gram ARPA by hand: a listed bigram, a backed-off one, an OOV word, a missing <unk>."""
    (tmp_path / "lm.arpa").write_text(
        "\\data\\\nngram 1=4\nngram 2=2\n\n\\1-grams:\n-1.0\t<s>\t-0.5\n-0.7\tcat\t-0.2\n"
        "-0.9\tdog\n-1.2\t</s>\n\n\\2-grams:\n-0.3\t<s> cat\n-0.4\tcat dog\n\n\\end\\\n"
    )
    lm = TensorNgramLM(tmp_path / "lm.arpa")
    s0 = torch.tensor(lm.begin_state)

    def score(state, word):
        logp, nxt = lm.score(state, torch.tensor(lm.word_id(word)))
        return float(logp) / LN10, nxt

    p, s1 = score(s0, "cat")
    assert p == pytest.approx(-0.3)  # listed: P(cat | <s>)
    p, s2 = score(s1, "dog")
    assert p == pytest.approx(-0.4)
    p, _ = score(s2, "</s>")
    assert p == pytest.approx(-1.2)  # dog has no backoff weight: 0 + P(</s>)
    p, _ = score(s0, "dog")
    assert p == pytest.approx(-0.5 - 0.9)  # bo(<s>) + P(dog)
    p, _ = score(s1, "bird")
    assert p == pytest.approx(-0.2 - 100.0)  # bo(cat) + KenLM's substitute P(<unk>)


@pytest.mark.parametrize("order", [2, 3, 4])
def test_tensor_lm_matches_kenlm(arpas, order):
    """Every word of held-out sentences (with OOV words mixed in) in one batch: ln P and the
    state it leads to, against KenLM queried word by word."""
    kenlm, lm = KenLM(arpas[order]), TensorNgramLM(arpas[order])
    sentences = [s.split() for s in markov_sentences(60, seed=7)]
    sentences += [s[:2] + ["zebra"] + s[2:] for s in sentences[:10]]
    ref = []
    for words in sentences:
        state = kenlm.begin_state()
        for w in [*words, "</s>"]:
            logp, state = kenlm.score(state, w)
            ref.append(logp)
    # the tensor LM: all sentences advance together, one word position at a time
    width = max(len(s) for s in sentences) + 1
    ids = torch.full((len(sentences), width), -1)
    for i, words in enumerate(sentences):
        ids[i, : len(words) + 1] = torch.tensor([lm.word_id(w) for w in [*words, "</s>"]])
    state = torch.full((len(sentences),), lm.begin_state)
    got = torch.zeros(ids.shape, dtype=torch.float64)
    for j in range(width):
        logp, nxt = lm.score(state, ids[:, j].clamp(min=0))
        got[:, j], state = logp, torch.where(ids[:, j] >= 0, nxt, state)
    got = got[ids >= 0].tolist()  # row-major: the order of ref
    assert len(got) == len(ref)
    assert np.abs(np.array(got) - np.array(ref)).max() < 1e-4
    hits = sum(abs(r - g) < 1e-4 for r, g in zip(ref, got))
    assert hits == len(ref)


@pytest.mark.parametrize("kind", ["character", "sentencepiece"])
@pytest.mark.parametrize("with_lm", [False, True])
def test_same_beams_as_the_cpu_search(kind, with_lm, arpas):
    """Random logits and simulated emissions with confusions: every final beam of every
    utterance (ids, order, scores within 1e-3), beams 1, 8 and 32; beam 8 also with the
    fixed-shape steps of the CUDA-graph path."""
    tokens = CHAR_TOKENS if kind == "character" else sentencepiece_tokens()
    lm = KenLM(arpas[3]) if with_lm else None
    _, simulated = make_data(tokens, count=12, seed=5, rate=0.3)
    utts = [torch.from_numpy(x) for x in simulated] + random_logprobs(12, len(tokens), seed=3)
    compared = 0
    for beam in (1, 8, 32):
        decoder = CTCDecoder(tokens, lm, DecoderConfig(beam=beam, alpha=0.8, beta=1.0))
        compared += assert_same_beams(decoder, utts)
        if beam == 8:
            assert_same_beams(decoder, utts, static=True)
    assert compared > 24 * 20  # most utterances fill their beams


def test_same_beams_on_a_trained_models_logits(toy_asr_model, tmp_path):
    """Log-probabilities of a trained CTC model (the toy tone-word model) on held-out
    utterances, with a 3-gram over its words, beams 4 and 16."""
    from toy_asr import random_sentence, utterance

    from speechssl.asr.model import load_model

    rng = np.random.default_rng(11)
    texts = [" ".join(random_sentence(rng)) for _ in range(300)]
    (tmp_path / "text").write_text("\n".join(texts) + "\n")
    arpa = build_arpa(tmp_path / "text", tmp_path / "lm.arpa", order=3, discount_fallback=True)
    model = load_model(toy_asr_model)
    wavs = [torch.from_numpy(utterance(random_sentence(rng), seed=50 + i)) for i in range(8)]
    lengths = torch.tensor([len(w) for w in wavs])
    with torch.inference_mode():
        lp, frames = model.logprobs(
            torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True), lengths
        )
    utts = [lp[i, :n].clone() for i, n in enumerate(frames.tolist())]
    for beam in (4, 16):
        for lm in (None, KenLM(arpa)):
            decoder = CTCDecoder(model.tokens, lm, DecoderConfig(beam=beam, alpha=0.5, beta=0.5))
            assert_same_beams(decoder, utts, static=beam == 16)


def test_token_level_lm_for_sentencepiece(tmp_path):
    """A token-level n-gram (its words are the sentencepiece pieces, as NeMo's GPU LM uses):
    kind='phones' scores every piece as it is emitted; the same beams as the CPU search."""
    tokens = sentencepiece_tokens()
    pieces = [" ".join(tokens[i] for i in labelling(s, tokens)) for s in markov_sentences(300, 1)]
    (tmp_path / "text").write_text("\n".join(pieces) + "\n")
    arpa = build_arpa(tmp_path / "text", tmp_path / "lm.arpa", order=4, discount_fallback=True)
    _, simulated = make_data(tokens, count=10, seed=12, rate=0.3)
    decoder = CTCDecoder(tokens, arpa, DecoderConfig(beam=16, alpha=0.5), kind="phones")
    assert_same_beams(decoder, [torch.from_numpy(x) for x in simulated])


def test_compiled_step_gives_the_same_beams(arpas):
    """``compile=True`` (torch.compile of the fixed-shape step, inductor's C++ backend here,
    generated Triton kernels on a GPU): the same beams as the CPU search."""
    tokens = sentencepiece_tokens()
    _, simulated = make_data(tokens, count=6, seed=8, rate=0.3)
    utts = [torch.from_numpy(x) for x in simulated]
    decoder = CTCDecoder(tokens, KenLM(arpas[3]), DecoderConfig(beam=6, alpha=0.8))
    lengths = torch.tensor([len(u) for u in utts])
    padded = torch.nn.utils.rnn.pad_sequence(utts, batch_first=True)
    search = BatchPrefixSearch(decoder, compile=True)
    got = search(padded, lengths, static=True)
    for u, beams in zip(utts, got):
        ref = cpu_reference(decoder, u.numpy())
        assert [h.tokens for h in beams] == [r[1] for r in ref]
        assert max(abs(h.score - r[0]) for h, r in zip(beams, ref)) < 1e-3
    # a batch of other lengths reuses the compiled step: no recompile (the step's inputs are
    # (B, ...) only; with the length in them dynamo recompiled per batch, then gave up: eager)
    from torch._dynamo.utils import counters  # imports triton: at run time, not at collection

    graphs = counters["stats"]["unique_graphs"]
    short = [u[: len(u) // 2 + 3] for u in utts]
    again = search(torch.nn.utils.rnn.pad_sequence(short, batch_first=True),
                   torch.tensor([len(u) for u in short]))  # fmt: skip
    assert counters["stats"]["unique_graphs"] == graphs
    for u, beams in zip(short, again):
        assert [h.tokens for h in beams] == [r[1] for r in cpu_reference(decoder, u.numpy())]


def test_frames_of_the_emitted_tokens():
    """Clean simulated emissions: the best labelling is the argmax path's, and each token was
    emitted at the first frame of its run on that path (what timestamps are made of)."""
    rng = np.random.default_rng(9)
    labels = [labelling(text, CHAR_TOKENS) for text in markov_sentences(6, seed=9)]
    simulated = simulate_ctc_emissions(labels, len(CHAR_TOKENS), rng, margin=(14.0, 0.5))
    utts = [torch.from_numpy(x) for x in simulated]
    decoder = CTCDecoder(CHAR_TOKENS, None, DecoderConfig(beam=8))
    padded = torch.nn.utils.rnn.pad_sequence(utts, batch_first=True)
    best = BatchPrefixSearch(decoder)(padded, torch.tensor([len(u) for u in utts]), top=1)
    for u, (hyp,) in zip(utts, best):
        path = u.argmax(1).tolist()
        starts = [
            t for t in range(len(path)) if path[t] != 0 and (t == 0 or path[t - 1] != path[t])
        ]
        assert hyp.tokens == [path[t] for t in starts]
        assert hyp.frames == starts


def test_blank_skipping_takes_fewer_steps_and_keeps_the_text():
    """``blank_skip=0.9``: frames whose blank posterior is >= 0.9 are blank-only steps, merged
    into runs: fewer steps than the exact search (which merges only frames with no other candidate); on
    peaky emissions the 1-best texts stay the same."""
    _, simulated = make_data(CHAR_TOKENS, count=16, seed=4, rate=0.2)
    utts = [torch.from_numpy(x) for x in simulated]
    padded = torch.nn.utils.rnn.pad_sequence(utts, batch_first=True)
    lengths = torch.tensor([len(u) for u in utts])
    decoder = CTCDecoder(CHAR_TOKENS, None, DecoderConfig(beam=8, token_min_logp=-8.0))
    exact, skipping = BatchPrefixSearch(decoder), BatchPrefixSearch(decoder, blank_skip=0.9)
    steps_exact = int(exact._events(padded, lengths)[3].sum())
    steps_skip = int(skipping._events(padded, lengths)[3].sum())
    assert steps_skip < steps_exact
    a, b = exact(padded, lengths, top=1), skipping(padded, lengths, top=1)
    same = np.mean([x[0].tokens == y[0].tokens for x, y in zip(a, b)])
    assert same >= 0.9


def test_decode_batch_on_a_device_gives_the_cpu_hypotheses(arpas):
    """``CTCDecoder.decode_batch(device=...)``: the same n-best texts, scores and word
    timestamps as the CPU search, over several batches (BATCH_UTTS made small)."""
    _, simulated = make_data(CHAR_TOKENS, count=10, seed=6)
    decoder = CTCDecoder(CHAR_TOKENS, KenLM(arpas[3]), DecoderConfig(beam=16, nbest=4))
    decoder.BATCH_UTTS = 3
    ref = decoder.decode_batch(simulated)
    got = decoder.decode_batch(simulated, device="cpu")
    for r, g in zip(ref, got, strict=True):
        assert [h.text for h in g] == [h.text for h in r]
        assert np.allclose([h.score for h in g], [h.score for h in r], atol=1e-3)
        assert [h.words for h in g] == [h.words for h in r]


def test_bad_input(arpas, tmp_path):
    decoder = CTCDecoder(CHAR_TOKENS, None, DecoderConfig(beam=4))
    bad = torch.zeros(5, len(CHAR_TOKENS))  # not log-normalised
    with pytest.raises(ValueError, match="utterance 1: not log-normalised"):
        decoder.decode_batch([bad.log_softmax(-1), bad], device="cpu")
    with pytest.raises(ValueError, match="beam <= 128"):
        BatchPrefixSearch(CTCDecoder(CHAR_TOKENS, None, DecoderConfig(beam=129)))
    binary = build_binary(arpas[2], tmp_path / "lm.bin")  # no lm.arpa beside it
    with pytest.raises(ValueError, match="reads the LM's ARPA file"):
        BatchPrefixSearch(CTCDecoder(CHAR_TOKENS, binary))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here")
def test_same_beams_on_the_gpu(arpas):
    tokens = sentencepiece_tokens()
    _, simulated = make_data(tokens, count=12, seed=5, rate=0.3)
    decoder = CTCDecoder(tokens, KenLM(arpas[4]), DecoderConfig(beam=32, alpha=0.8))
    utts = [torch.from_numpy(x) for x in simulated]
    assert_same_beams(decoder, utts, device="cuda", static=True)  # CUDA graph, Triton LM kernel
    assert_same_beams(decoder, utts, device="cuda", static=False)  # eager steps
