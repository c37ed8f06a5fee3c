"""Batched greedy CTC decoding (speechssl.kernels.ctc_greedy) against the CPU decoder's greedy
path (CTCDecoder.greedy): random and peaked logits, bf16, lengths shorter than T, repeats across
the kernel's frame blocks, vocabularies over one block, every tile the GPU's autotuner may pick.
The Triton kernel runs under Triton's CPU interpreter here (TRITON_INTERPRET=1, no GPU); the
same source runs on a GPU (its autotuning, which needs one, is not covered here)."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from speechssl.asr.decode import CTCDecoder  # noqa: E402
from speechssl.kernels import ctc_greedy  # noqa: E402
from speechssl.kernels.ctc_greedy import TILES, best_path, ctc_greedy_batch  # noqa: E402


def _decoder(vocab: int) -> CTCDecoder:
    tokens = ["<blank>", "|"] + [chr(ord("a") + i % 26) + str(i) for i in range(vocab - 2)]
    return CTCDecoder(tokens, kind="phones")


def _reference(logits: torch.Tensor, lengths: torch.Tensor, vocab: int) -> list[list[int]]:
    decoder = _decoder(vocab)
    out = []
    for b in range(len(logits)):
        lp = torch.log_softmax(logits[b, : int(lengths[b])].float(), -1).numpy()
        out.append(list(decoder.greedy(lp).tokens) if len(lp) else [])
    return out


def _logits(vocab: int, dtype, b: int = 3, t: int = 70) -> torch.Tensor:
    g = torch.Generator().manual_seed(vocab)
    logits = torch.randn(b, t, vocab, generator=g) * 3  # T = 70: not a multiple of any block
    logits[:, ::3, 0] += 8  # plenty of blanks
    logits[0, 30:34, 5] += 20  # one token held across the block boundaries at 32 and 64: merged
    logits[1, 60:68, 7] += 20
    return logits.to(dtype)


@pytest.mark.parametrize(("vocab", "dtype"), [(30, torch.float32), (500, torch.bfloat16),
                                              (1500, torch.float32)])  # fmt: skip
def test_matches_the_cpu_greedy_decoder(vocab, dtype):
    assert ctc_greedy._use_kernel(torch.device("cpu"))  # the Triton kernel, interpreted
    logits = _logits(vocab, dtype)
    lengths = torch.tensor([70, 45, 1])
    got = ctc_greedy_batch(logits, lengths)
    assert got == _reference(logits, lengths, vocab)
    assert got[0].count(5) >= 1 and [5, 5] not in [got[0][i : i + 2] for i in range(len(got[0]))]


@pytest.mark.parametrize(("block_t", "block_v"), sorted({(t, v) for t, v, _ in TILES}))
def test_every_tile_gives_torch_argmax(block_t, block_v):
    vocab = 700  # over one block for most tiles, under the widest
    logits = _logits(vocab, torch.bfloat16, b=2, t=40)
    logits[1, 5, [3, 600]] = 50.0  # a tie across blocks: the first maximum, as torch.argmax
    lengths = torch.tensor([40, 23])
    ids, best, _ = best_path(logits, lengths, tile=(block_t, block_v))
    want_best, want = logits.float().max(-1)
    assert torch.equal(ids[0], want[0].int()) and torch.equal(ids[1, :23], want[1, :23].int())
    assert torch.equal(best[0], want_best[0]) and ids[1, 5] == 3
    assert (ids[1, 23:] == -1).all() and (best[1, 23:] == float("-inf")).all()


def test_torch_fallback_gives_the_same(monkeypatch):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 50, 40, generator=g) * 2
    lengths = torch.tensor([50, 3, 0, 27])
    kernel = ctc_greedy_batch(logits, lengths)
    monkeypatch.setattr(ctc_greedy, "_use_kernel", lambda device: False)
    assert ctc_greedy_batch(logits, lengths) == kernel == _reference(logits, lengths, 40)
    assert kernel[2] == []


@pytest.mark.parametrize("kernel", [True, False])
def test_greedy_batch_gives_greedys_hypotheses(monkeypatch, kernel):
    """CTCDecoder.greedy_batch on a padded batch = CTCDecoder.greedy on each utterance: text,
    tokens, scores, and every word's frames and confidence."""
    if not kernel:
        monkeypatch.setattr(ctc_greedy, "_use_kernel", lambda device: False)
    vocab = 40
    logp = torch.log_softmax(_logits(vocab, torch.float32, b=4, t=90), -1)
    logp[2, 10:20, 1] += 30  # word delimiters: several words
    logp = torch.log_softmax(logp, -1)
    lengths = torch.tensor([90, 64, 33, 0])
    decoder = _decoder(vocab).with_config(beta=0.5)
    got = decoder.greedy_batch(logp, lengths)
    assert got[3].text == "" and got[3].tokens == [] and got[3].am_score == 0.0
    for b in range(3):
        want = decoder.greedy(logp[b, : int(lengths[b])].numpy())
        assert got[b].text == want.text and got[b].tokens == want.tokens and want.tokens
        assert got[b].am_score == pytest.approx(want.am_score, abs=1e-6)
        assert got[b].score == pytest.approx(want.score, abs=1e-6)
        assert [(w.word, w.start_frame, w.end_frame) for w in got[b].words] == [
            (w.word, w.start_frame, w.end_frame) for w in want.words
        ]
        assert [w.confidence for w in got[b].words] == pytest.approx(
            [w.confidence for w in want.words], rel=1e-6
        )
    assert len(got[2].words) >= 2
