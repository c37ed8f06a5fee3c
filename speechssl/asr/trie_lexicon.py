"""The decoder's tokens against the LM vocabulary's prefix trie, as tensors: the partial-word
side of the batched beam search (:mod:`speechssl.asr.batch_search`), the same rules as
:meth:`speechssl.asr.prefix_search.WordScorer.advance` on integer node ids."""

from __future__ import annotations

import torch

from speechssl.asr.ngram_tensor import TensorNgramLM
from speechssl.asr.prefix_search import WordScorer


class TrieLexicon:
    """The decoder's tokens against the LM vocabulary's prefix trie, as tensors.

    Node ids: 0 the empty word, 1.. the vocabulary's prefixes, ``-n`` a partial word of ``n``
    characters that begins no vocabulary word (without an LM every non-empty word is one).
    ``advance(node, token)`` is :meth:`WordScorer.advance` on these ids.
    """

    def __init__(self, scorer: WordScorer, lm: TensorNgramLM | None, device: torch.device) -> None:
        piece, starts, ends = scorer.piece, scorer.starts_word, scorer.ends_word
        vocab_size = len(piece)
        prefixes = sorted(scorer.prefixes or ()) if lm is not None else []
        node_of = {"": 0, **{p: i + 1 for i, p in enumerate(prefixes)}}
        node_len = [0] + [len(p) for p in prefixes]
        # a prefix that is not itself a word completes as <unk>, as KenLM scores it
        node_word = [lm.unk if lm else 0] + [lm.words.get(p, lm.unk) for p in prefixes]
        continuing: dict[str, list[int]] = {}
        for t in range(vocab_size):
            if piece[t] and not starts[t] and not ends[t]:
                continuing.setdefault(piece[t], []).append(t)
        keys, targets = [], []
        for p, node in node_of.items():  # every (prefix, piece) -> longer prefix
            for i in range(len(p)):
                for t in continuing.get(p[i:], ()):
                    keys.append(node_of[p[:i]] * vocab_size + t)
                    targets.append(node)
        role = [0 if s or e else (1 if not p else 2) for p, s, e in zip(piece, starts, ends)]
        start = [node_of.get(p, -len(p)) if p else 0 for p in piece]
        keys_t = torch.tensor(keys or [-1], dtype=torch.int64)
        keys_t, perm = keys_t.sort()
        self.vocab_size = vocab_size
        self.edge_keys = keys_t.to(device)
        self.edge_targets = torch.tensor(targets or [0], dtype=torch.int64)[perm].to(device)
        self.role = torch.tensor(role, device=device)  # 0 word boundary, 1 no text, 2 continues
        self.start_node = torch.tensor(start, dtype=torch.int64, device=device)
        self.piece_len = torch.tensor([len(p) for p in piece], device=device)
        self.node_len = torch.tensor(node_len, dtype=torch.int64, device=device)
        self.node_word = torch.tensor(node_word, dtype=torch.int64, device=device)

    def length(self, node: torch.Tensor) -> torch.Tensor:
        return torch.where(node >= 0, self.node_len[node.clamp(min=0)], -node)

    def advance(self, node: torch.Tensor, token: torch.Tensor):
        """(the partial word after ``token``, whether ``token`` completed a non-empty word)."""
        role = self.role[token]
        key = node * self.vocab_size + token
        pos = torch.searchsorted(self.edge_keys, key).clamp_(max=len(self.edge_keys) - 1)
        found = (node >= 0) & (self.edge_keys[pos] == key)
        grown = torch.where(
            found, self.edge_targets[pos], -(self.length(node) + self.piece_len[token])
        )
        new = torch.where(role == 0, self.start_node[token], torch.where(role == 1, node, grown))
        return new, (role == 0) & (node != 0)
