"""The fused Triton n-gram query kernel against the torch backoff walk and KenLM itself.

No GPU here: the kernel runs under Triton's interpreter (TRITON_INTERPRET=1, set before the
kernel module is imported); the same source runs on a GPU."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton.jit sees the kernel

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import require_lmplz  # noqa: E402
from test_decode import markov_sentences  # noqa: E402

from speechssl.asr.lm import KenLM, build_arpa  # noqa: E402
from speechssl.asr.ngram_tensor import TensorNgramLM  # noqa: E402

require_lmplz()
pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
    reason="needs Triton's interpreter on a CPU, or a GPU",
)


@pytest.mark.parametrize("order", [2, 4])
def test_kernel_equals_the_torch_walk_and_kenlm(tmp_path, order):
    """Random (state, word) pairs over all states (every backoff depth), then the words of
    held-out sentences in context: the kernel's scores and next states equal the torch loop's,
    and the sentences' scores equal KenLM's."""
    (tmp_path / "text").write_text("\n".join(markov_sentences(300, seed=1)) + "\n")
    arpa = build_arpa(tmp_path / "text", tmp_path / "lm.arpa", order=order, discount_fallback=True)
    lm = TensorNgramLM(arpa)
    g = torch.Generator().manual_seed(0)
    states = torch.randint(0, len(lm.backoff), (3000,), generator=g)
    words = torch.randint(0, lm.num_words, (3000,), generator=g)
    ref = lm.score(states, words, kernel=False)
    got = lm.score(states, words, kernel=True)
    assert torch.allclose(got[0], ref[0], atol=1e-9)
    assert torch.equal(got[1], ref[1])
    kenlm = KenLM(arpa)
    for sentence in markov_sentences(20, seed=9):
        words = [*sentence.split(), "zebra", "</s>"]
        state, total = torch.tensor([lm.begin_state]), 0.0
        for w in words:
            logp, state = lm.score(state, torch.tensor([lm.word_id(w)]), kernel=True)
            total += float(logp[0])
        expected = kenlm.sentence_score(words[:-1])
        assert np.isclose(total, expected, atol=1e-4)
