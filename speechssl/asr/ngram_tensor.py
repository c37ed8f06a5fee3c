"""A word n-gram LM from a KenLM ARPA file held in tensors (CPU or GPU) and queried in batches:
the LM side of the batched beam search (:mod:`speechssl.asr.batch_search`).

The backoff structure as arrays. A *state* is an n-gram of order < N that the ARPA lists (a
context), state 0 the empty context. An *arc* is an n-gram ``h w`` of any order: from the state
of ``h``, label ``w``, weight ln P(w | h), to the state of the longest suffix of ``h w`` that is
a state (``h w`` itself below order N). Each state has its backoff weight and its backoff state
(the state of its longest proper suffix). Arcs are sorted by ``state * num_words + word`` so a
query is a binary search (``torch.searchsorted``):

    P(w | h) = P_arpa(h w)                    if the ARPA lists h w
             = bo(h) + P(w | h minus its first word)  otherwise

walked for at most N steps in parallel for every query; the unigrams hold every word (words
outside the vocabulary are ``<unk>``), so the walk ends at the empty context. These are the
scores KenLM's ``BaseScore`` returns (natural log here, as :class:`speechssl.asr.lm.KenLM`);
``tests/test_batch_search.py`` checks them against the ``kenlm`` module. KenLM also shortens a
state to the n-grams that extend to the right; that changes which state a hypothesis holds, not
its scores.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from speechssl.asr.lm import LN10

KENLM_MISSING_UNK = -100.0  # log10 P(<unk>) KenLM substitutes when an ARPA lacks <unk>


def read_arpa(path: str | os.PathLike) -> tuple[int, dict[tuple[str, ...], tuple[float, float]]]:
    """(order, {n-gram words: (log10 prob, log10 backoff)}) of an ARPA file."""
    path = Path(path)
    ngrams: dict[tuple[str, ...], tuple[float, float]] = {}
    order, section = 0, None
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("\\"):
                section = None
                if line.endswith("-grams:"):
                    section = int(line[1:].split("-")[0])
                    order = max(order, section)
                continue
            if section is None:
                continue
            fields = line.split("\t")
            if len(fields) < 2 or len(fields[1].split()) != section:
                raise ValueError(f"{path}:{number}: not a {section}-gram line of an ARPA file")
            backoff = float(fields[2]) if len(fields) > 2 else 0.0
            ngrams[tuple(fields[1].split())] = (float(fields[0]), backoff)
    if order == 0 or not ngrams:
        raise ValueError(f"{path} has no n-gram sections: not an ARPA language model")
    return order, ngrams


class TensorNgramLM:
    """An ARPA n-gram LM as tensors on ``device``; ``score(states, words)`` scores a batch.

    ``words``: word string -> id (``<unk>`` included); ``begin_state`` / ``null_state``: the
    ``<s>`` context and the empty one; ``eos``: the id of ``</s>``.
    """

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu"):
        self.path = Path(path)
        order, ngrams = read_arpa(self.path)
        self.order = order
        if ("<unk>",) not in ngrams:
            ngrams[("<unk>",)] = (KENLM_MISSING_UNK, 0.0)
        vocab = sorted(w for (w, *rest) in ngrams if not rest)
        self.words = {w: i for i, w in enumerate(vocab)}
        self.unk = self.words["<unk>"]
        self.eos = self.words.get("</s>", self.unk)
        # states: every n-gram below the top order (id 0: the empty context)
        contexts = sorted((g for g in ngrams if len(g) < order), key=lambda g: (len(g), g))
        state_of = {(): 0, **{g: i + 1 for i, g in enumerate(contexts)}}

        def longest_state(words: tuple[str, ...]) -> int:
            while words not in state_of:
                words = words[1:]
            return state_of[words]

        num_states = len(state_of)
        backoff = torch.zeros(num_states, dtype=torch.float64)
        backoff_state = torch.zeros(num_states, dtype=torch.int64)
        for g, s in state_of.items():
            if g:
                backoff[s] = ngrams[g][1] * LN10
                backoff_state[s] = longest_state(g[1:])
        keys, weights, targets = [], [], []
        num_words = len(vocab)
        for g, (logp, _) in ngrams.items():
            if g[:-1] not in state_of:
                raise ValueError(
                    f"{self.path}: the {len(g)}-gram {' '.join(g)!r} has no "
                    f"{len(g) - 1}-gram {' '.join(g[:-1])!r}; not a backoff ARPA file"
                )
            keys.append(state_of[g[:-1]] * num_words + self.words[g[-1]])
            weights.append(logp * LN10)
            targets.append(longest_state(g if len(g) < order else g[1:]))
        keys = torch.tensor(keys, dtype=torch.int64)
        keys, perm = keys.sort()
        device = torch.device(device)
        self.device = device
        self.num_words = num_words
        self.arc_keys = keys.to(device)
        self.arc_weights = torch.tensor(weights, dtype=torch.float64)[perm].to(device)
        self.arc_targets = torch.tensor(targets, dtype=torch.int64)[perm].to(device)
        self.backoff = backoff.to(device)
        self.backoff_state = backoff_state.to(device)
        self.null_state = 0
        self.begin_state = state_of.get(("<s>",), 0)

    def __repr__(self) -> str:
        return (
            f"TensorNgramLM({str(self.path)!r}, order={self.order}, words={self.num_words}, "
            f"arcs={len(self.arc_keys)}, device={self.device})"
        )

    def word_id(self, word: str) -> int:
        return self.words.get(word, self.unk)

    def score(
        self, states: torch.Tensor, words: torch.Tensor, kernel: bool | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ln P(word | state) and the next state for each (state, word) pair; any shapes that
        broadcast, int64 ids on this LM's device. ``kernel`` (default: on a GPU): the fused
        Triton kernel (:mod:`speechssl.kernels.ngram_score`) instead of the torch loop."""
        states, words = torch.broadcast_tensors(states, words)
        if states.device.type == "cuda" if kernel is None else kernel:
            from speechssl.kernels.ngram_score import ngram_score  # triton: loaded on first use

            return ngram_score(
                states, words, self.arc_keys, self.arc_weights, self.arc_targets, self.backoff,
                self.backoff_state, self.num_words, self.order,
            )  # fmt: skip
        total = torch.zeros(states.shape, dtype=torch.float64, device=states.device)
        found = torch.zeros(states.shape, dtype=torch.bool, device=states.device)
        out_state = torch.zeros_like(states)
        last = len(self.arc_keys) - 1
        for _ in range(self.order):
            key = states * self.num_words + words
            pos = torch.searchsorted(self.arc_keys, key).clamp_(max=last)
            hit = ~found & (self.arc_keys[pos] == key)
            total = torch.where(hit, total + self.arc_weights[pos], total)
            out_state = torch.where(hit, self.arc_targets[pos], out_state)
            miss = ~found & ~hit
            total = torch.where(miss, total + self.backoff[states], total)
            states = torch.where(miss, self.backoff_state[states], states)
            found |= hit
        return total, out_state


def load_tensor_lm(path: str | os.PathLike, device: str | torch.device = "cpu") -> TensorNgramLM:
    """The ARPA at ``path`` on ``device``, parsed once per file version and device (a weight
    sweep builds a decoder per (alpha, beta); the LM stays the same)."""
    path = Path(path).resolve()
    stat = path.stat()
    return _load_cached(path, stat.st_mtime_ns, stat.st_size, str(torch.device(device)))


@functools.lru_cache(maxsize=4)
def _load_cached(path: Path, mtime_ns: int, size: int, device: str) -> TensorNgramLM:
    return TensorNgramLM(path, device)
