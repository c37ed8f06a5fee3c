"""Batched n-gram LM queries in one Triton kernel: the backoff walk of
:class:`speechssl.asr.ngram_tensor.TensorNgramLM` fused (one launch instead of ~8 per order).

One program per block of queries. For each (state, word): up to ``order`` times, a binary
search of ``state * num_words + word`` in the sorted arc keys; a hit adds the arc's weight and
gives the next state, a miss adds the state's backoff weight and moves to its backoff state.
The arrays are the LM's (see ``ngram_tensor``); the torch loop there is the reference
(``tests/test_ngram_triton.py`` checks the two agree, under Triton's interpreter on a CPU).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _ngram_score_kernel(
    states_ptr, words_ptr, logp_ptr, next_ptr,
    keys_ptr, weights_ptr, targets_ptr, backoff_ptr, backoff_state_ptr,
    n, num_arcs, num_words,
    ORDER: tl.constexpr, STEPS: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    state = tl.load(states_ptr + offs, mask=mask, other=0)
    word = tl.load(words_ptr + offs, mask=mask, other=0)
    total = tl.zeros([BLOCK], tl.float64)
    found = tl.zeros([BLOCK], tl.int32)
    nxt = tl.zeros([BLOCK], tl.int64)
    for _ in tl.static_range(ORDER):
        key = state * num_words + word
        todo = mask & (found == 0)  # a query already found reads no more arcs
        lo = tl.zeros([BLOCK], tl.int64)
        hi = tl.zeros([BLOCK], tl.int64) + num_arcs
        for _s in tl.static_range(STEPS):  # lower bound: the first key >= key
            open_ = lo < hi
            mid = (lo + hi) // 2
            less = tl.load(keys_ptr + mid, mask=todo & open_, other=0) < key
            lo = tl.where(open_ & less, mid + 1, lo)
            hi = tl.where(open_ & ~less, mid, hi)
        pos = tl.minimum(lo, num_arcs - 1)
        hit = todo & (tl.load(keys_ptr + pos, mask=todo, other=-1) == key)
        miss = todo & ~hit
        total += tl.where(hit, tl.load(weights_ptr + pos, mask=hit, other=0.0), 0.0)
        nxt = tl.where(hit, tl.load(targets_ptr + pos, mask=hit, other=0), nxt)
        total += tl.where(miss, tl.load(backoff_ptr + state, mask=miss, other=0.0), 0.0)
        state = tl.where(miss, tl.load(backoff_state_ptr + state, mask=miss, other=0), state)
        found = tl.where(hit, 1, found)
    tl.store(logp_ptr + offs, total, mask=mask)
    tl.store(next_ptr + offs, nxt, mask=mask)


def ngram_score(
    states: torch.Tensor,
    words: torch.Tensor,
    arc_keys: torch.Tensor,
    arc_weights: torch.Tensor,
    arc_targets: torch.Tensor,
    backoff: torch.Tensor,
    backoff_state: torch.Tensor,
    num_words: int,
    order: int,
    block: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ln P(word | state) (float64) and the next state for same-shape int64 ``states`` and
    ``words``; the other arguments are the LM's arrays (``TensorNgramLM``)."""
    shape = states.shape
    states, words = states.reshape(-1).contiguous(), words.reshape(-1).contiguous()
    n = states.numel()
    logp = torch.empty(n, dtype=torch.float64, device=states.device)
    nxt = torch.empty(n, dtype=torch.int64, device=states.device)
    if n:
        steps = max(1, int(len(arc_keys)).bit_length())
        _ngram_score_kernel[(triton.cdiv(n, block),)](
            states, words, logp, nxt, arc_keys, arc_weights, arc_targets, backoff, backoff_state,
            n, len(arc_keys), num_words, ORDER=order, STEPS=steps, BLOCK=block,
        )  # fmt: skip
    return logp.view(shape), nxt.view(shape)
