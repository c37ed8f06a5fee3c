"""Batched greedy CTC decoding (speechssl.kernels.ctc_greedy) against the CPU decoder's greedy
path (CTCDecoder.greedy): random and peaked logits, bf16, lengths shorter than T, repeats across
the kernel's frame blocks, vocabularies over one block. The Triton kernel runs under Triton's
CPU interpreter here (TRITON_INTERPRET=1, no GPU); the same source runs on a GPU."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from speechssl.asr.decode import CTCDecoder  # noqa: E402
from speechssl.kernels import ctc_greedy  # noqa: E402
from speechssl.kernels.ctc_greedy import ctc_greedy_batch  # noqa: E402


def _reference(logits: torch.Tensor, lengths: torch.Tensor, vocab: int) -> list[list[int]]:
    tokens = ["<blank>", "|"] + [chr(ord("a") + i % 26) + str(i) for i in range(vocab - 2)]
    decoder = CTCDecoder(tokens, kind="phones")
    out = []
    for b in range(len(logits)):
        lp = torch.log_softmax(logits[b, : int(lengths[b])].float(), -1).numpy()
        out.append(list(decoder.greedy(lp).tokens) if len(lp) else [])
    return out


@pytest.mark.parametrize(("vocab", "dtype"), [(30, torch.float32), (500, torch.bfloat16),
                                              (1500, torch.float32)])  # fmt: skip
def test_matches_the_cpu_greedy_decoder(vocab, dtype):
    assert ctc_greedy._use_kernel(torch.device("cpu"))  # the Triton kernel, interpreted
    g = torch.Generator().manual_seed(vocab)
    b, t = 3, 70  # T not a multiple of the 32-frame block
    logits = torch.randn(b, t, vocab, generator=g) * 3
    logits[:, ::3, 0] += 8  # plenty of blanks
    logits[0, 30:34, 5] += 20  # one token held across the block boundary at frame 32: merged
    logits = logits.to(dtype)
    lengths = torch.tensor([70, 45, 1])
    got = ctc_greedy_batch(logits, lengths)
    assert got == _reference(logits, lengths, vocab)
    assert got[0].count(5) >= 1 and [5, 5] not in [got[0][i : i + 2] for i in range(len(got[0]))]


def test_torch_fallback_gives_the_same(monkeypatch):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 50, 40, generator=g) * 2
    lengths = torch.tensor([50, 3, 0, 27])
    kernel = ctc_greedy_batch(logits, lengths)
    monkeypatch.setattr(ctc_greedy, "_use_kernel", lambda device: False)
    assert ctc_greedy_batch(logits, lengths) == kernel == _reference(logits, lengths, 40)
    assert kernel[2] == []
