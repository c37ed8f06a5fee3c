"""The CTC prefix beam search with word-level LM fusion used by
:meth:`speechssl.asr.decode.CTCDecoder.beam_search`.

The beam search is a CTC prefix beam search (Graves 2012, ch. 7; Hannun et al. 2014,
arXiv:1408.2873): each prefix (a labelling, not a path) carries the log-probability of the paths
that emit it and end in a blank (``pb``) or in its last token (``pnb``). It is lexicon-free and
fuses a word n-gram LM when a word is complete (at a word delimiter, at a ``▁`` piece, at the end
of the utterance), ranking prefixes by

    log P_ctc(prefix) + alpha * ln P_lm(complete words) + beta * #words  [+ partial penalty]

A complete word the LM lacks scores ln P_lm(<unk>) + unk_score * ln 10 (``unk_score`` is in
log10 units, like KenLM's scores and pyctcdecode's ``unk_score_offset``). While a word is being
spelled, a partial word that begins no word of the LM's vocabulary costs ``unk_score`` (times
length / 6 beyond 6 characters; unweighted, for ranking only). These are pyctcdecode 0.5.0's
conventions (with natural-log LM scores, ``<s>``/``</s>`` boundaries and a per-word ``beta``),
so with the same parameters the two decoders rank hypotheses alike; pyctcdecode keeps the blank-
and non-blank-ending paths of a prefix as separate beams, where this search adds them.
"""

from __future__ import annotations

import heapq
import math
import operator

import numpy as np

from speechssl.asr.lm import LN10, KenLM

BLANK = 0  # the CTC blank's token index
NEG_INF = float("-inf")
_FIRST = operator.itemgetter(0)


def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    if b == NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


class WordScorer:
    """The word-level side of the search, with caches shared by all utterances of a decoder.

    A partial word is a node: an id of its string. With an LM vocabulary, the strings that begin
    no vocabulary word are known only by their length (KenLM scores every OOV word alike, as
    ``<unk>``; the partial-word penalty grows with the length). An LM context is an id of a
    KenLM state. Tokens move nodes through cached transitions; a word is scored once per
    (context, node).

    ``unk_score``: log10 units added for a word the LM's vocabulary lacks (and the partial-word
    penalty); ``score_boundary``: ``<s>`` context at the start and ``</s>`` scored at the end.
    """

    MAX_CACHED = 2_000_000  # entries before the caches are dropped (between utterances)
    AVG_WORD_LEN = 6  # partial OOV words longer than this are penalised in proportion (pyctcdecode)

    def __init__(
        self,
        piece,
        starts_word,
        ends_word,
        lm: KenLM | None,
        *,
        unk_score: float,
        score_boundary: bool,
    ):
        self.piece, self.starts_word, self.ends_word = piece, starts_word, ends_word
        self.vocab_size = len(piece)
        self.lm = lm
        self.unk_score, self.score_boundary = unk_score, score_boundary
        self.prefixes = None if lm is None else lm.word_prefixes
        self.reset()

    def reset(self) -> None:
        self.words = [""]  # node -> partial word ("<unk>" for the OOV ones)
        self.lengths = [0]  # node -> characters in the partial word
        self.oov = [False]  # node -> begins no vocabulary word
        self.penalty = [0.0]  # node -> partial-word penalty (0 unless OOV)
        self.nodes = {"": 0}  # partial word (or "\0<length>" for OOV) -> node
        self.transitions: dict[int, tuple[int, int]] = {}  # node * V + token -> (node, done)
        self.contexts: list = []
        self.context_ids: dict = {}
        self.word_scores: dict[int, tuple[float, int]] = {}  # context << 32 | node -> ...
        self.end_scores: dict[int, float] = {}
        self.start_context = 0
        if self.lm is not None:
            start = self.lm.begin_state() if self.score_boundary else self.lm.null_state()
            self.start_context = self.context_id(start)

    def trim(self) -> None:
        if len(self.words) + len(self.transitions) + len(self.word_scores) > self.MAX_CACHED:
            self.reset()

    def node(self, word: str, length: int | None = None) -> int:
        """The node of partial word ``word`` (or of an OOV one of ``length`` characters)."""
        oov = length is not None or (
            self.prefixes is not None and word and word not in self.prefixes
        )
        length = len(word) if length is None else length
        key = f"\0{length}" if oov else word
        node = self.nodes.get(key)
        if node is None:
            node = self.nodes[key] = len(self.words)
            self.words.append("<unk>" if oov else word)
            self.lengths.append(length)
            self.oov.append(oov)
            scale = max(1.0, length / self.AVG_WORD_LEN)
            self.penalty.append(self.unk_score * scale if oov else 0.0)
        return node

    def advance(self, node: int, token: int) -> tuple[int, int]:
        """(the partial word after ``token``, the word it completes or 0); cached."""
        piece = self.piece[token]
        if self.ends_word[token] or self.starts_word[token]:
            out = (self.node(piece), node)
        elif not piece:
            out = (node, 0)
        elif self.oov[node]:  # stays OOV
            out = (self.node("", self.lengths[node] + len(piece)), 0)
        else:
            out = (self.node(self.words[node] + piece), 0)
        self.transitions[node * self.vocab_size + token] = out
        return out

    def context_id(self, state) -> int:
        cid = self.context_ids.get(state)
        if cid is None:
            cid = self.context_ids[state] = len(self.contexts)
            self.contexts.append(state)
        return cid

    def word_score(self, context: int, node: int) -> tuple[float, int]:
        """(ln P_lm(word | context) [+ unk_score * ln 10 if the LM lacks it], the next context)."""
        hit = self.word_scores.get(context << 32 | node)
        if hit is None:
            if self.lm is None:
                return 0.0, context
            word = self.words[node]
            logp, state = self.lm.score(self.contexts[context], word)
            if self.lm.is_oov(word):
                logp += self.unk_score * LN10
            hit = self.word_scores[context << 32 | node] = (logp, self.context_id(state))
        return hit

    def end_score(self, context: int) -> float:
        if self.lm is None or not self.score_boundary:
            return 0.0
        score = self.end_scores.get(context)
        if score is None:
            score = self.end_scores[context] = self.lm.end_score(self.contexts[context])
        return score


class PrefixSearch:
    """One utterance's prefix beam search.

    Prefixes live in a tree of parallel lists indexed by prefix id (0: the empty prefix). A beam
    is (ids, pb, pnb): prefix ids and the log-probabilities of their paths that end in a blank /
    in the prefix's last token.

    ``scorer``: the decoder's word-level side (its caches outlive the utterance); ``lp``: (T, V)
    log-softmax scores; ``beam``, ``beam_prune_logp``, ``token_min_logp``, ``alpha``, ``beta``:
    as in :class:`speechssl.asr.decode.DecoderConfig`.
    """

    def __init__(
        self,
        scorer: WordScorer,
        lp: np.ndarray,
        *,
        beam: int,
        beam_prune_logp: float,
        token_min_logp: float,
        alpha: float,
        beta: float,
    ):
        self.scorer = scorer
        self.beam, self.beam_prune_logp, self.token_min_logp = beam, beam_prune_logp, token_min_logp
        self.alpha, self.beta = alpha, beta
        self.lp = lp
        self.vocab_size = lp.shape[1]
        self.parent = [-1]
        self.last = [BLANK]
        # (partial-word node, LM context, ln P_lm of the complete words, #words,
        #  alpha * lm + beta * #words)
        self.state = [(0, self.scorer.start_context, 0.0, 0, 0.0)]
        self.fusion = [0.0]  # the state's weighted LM score + the partial-word penalty
        self.children: dict[int, int] = {}  # prefix id * V + token -> prefix id

    def labelling(self, prefix: int) -> list[int]:
        tokens = []
        while prefix > 0:
            tokens.append(self.last[prefix])
            prefix = self.parent[prefix]
        return tokens[::-1]

    def add(self, prefix: int, token: int, state: tuple) -> int:
        child = len(self.last)
        self.parent.append(prefix)
        self.last.append(token)
        self.state.append(state)
        self.fusion.append(state[4] + self.scorer.penalty[state[0]])
        self.children[prefix * self.vocab_size + token] = child
        return child

    def run(self) -> list[tuple[float, float, float, int, int]]:
        """Search all frames; the final beams as (score, am, lm, num_words, prefix), best first.

        Frames whose only candidate is the blank, or the token the previous frame held, come in
        runs; a run costs one step (plus an add per beam) instead of one per frame.
        """
        lp = self.lp
        num_frames = lp.shape[0]
        frames = np.arange(num_frames)
        best = lp.argmax(axis=1)
        candidates = lp >= self.token_min_logp
        candidates[frames, best] = True
        single = candidates.sum(axis=1) == 1
        best_logp = lp[frames, best].astype(np.float64)
        label = np.where(single, best, -1 - frames)  # multi-candidate frames never form runs
        starts = np.flatnonzero(np.r_[True, label[1:] != label[:-1]])
        run_logp = np.add.reduceat(best_logp, starts).tolist()
        tokens, logps = np.nonzero(candidates[starts])[1], lp[starts][candidates[starts]]
        offsets = np.r_[0, np.cumsum(candidates[starts].sum(axis=1))].tolist()
        cand = list(zip(tokens.tolist(), logps.astype(np.float64).tolist()))

        ids, pb, pnb = [0], [0.0], [NEG_INF]
        for r, run_total in enumerate(run_logp):
            frame_cand = cand[offsets[r] : offsets[r + 1]]
            if len(frame_cand) == 1 and frame_cand[0][0] == BLANK:
                pb = [_logaddexp(b, nb) + run_total for b, nb in zip(pb, pnb)]
                pnb = [NEG_INF] * len(ids)
                continue
            ids, pb, pnb = self.step(ids, pb, pnb, frame_cand)
            if len(frame_cand) == 1:
                # every beam now ends in the held token with pb = -inf: the rest of the run
                # only repeats it, which shifts all beams alike (no re-ranking, no pruning)
                rest = run_total - frame_cand[0][1]
                pnb = [nb + rest for nb in pnb]
        return self.finish(ids, pb, pnb)

    def step(self, ids, pb, pnb, cand):
        """One frame: extend every beam by every candidate ``(token, logp)``, merge equal
        prefixes, keep the ``beam`` best within ``beam_prune_logp`` of the best."""
        blank_logp = NEG_INF
        tokens = []
        for token, logp in cand:
            if token == BLANK:
                blank_logp = logp
            else:
                tokens.append((token, logp))
        new_b: dict[int, float] = {}  # one entry per beam: only a prefix's own paths add a blank
        new_nb: dict[int, float] = {}
        fresh = []  # (score, pnb, parent, token, word-level state) of prefixes not made yet
        children, last, vocab_size, state = self.children, self.last, self.vocab_size, self.state
        scorer = self.scorer
        transitions, word_scores, penalty = scorer.transitions, scorer.word_scores, scorer.penalty
        alpha, beta = self.alpha, self.beta
        for prefix, b, nb in zip(ids, pb, pnb):
            total = _logaddexp(b, nb)
            if blank_logp > NEG_INF:
                new_b[prefix] = total + blank_logp
            prefix_key, prefix_last = prefix * vocab_size, last[prefix]
            for token, logp in tokens:
                if token == prefix_last:
                    # a repeat without a blank in between stays in the prefix ...
                    if nb > NEG_INF:
                        v = nb + logp
                        old = new_nb.get(prefix)
                        new_nb[prefix] = v if old is None else _logaddexp(old, v)
                    # ... and only paths ending in blank emit the token again
                    if b == NEG_INF:
                        continue
                    v = b + logp
                else:
                    v = total + logp
                child = children.get(prefix_key + token)
                if child is not None:
                    old = new_nb.get(child)
                    new_nb[child] = v if old is None else _logaddexp(old, v)
                    continue
                if v == NEG_INF:
                    continue
                # a new prefix: its word-level state from cached transitions and word scores
                node, context, lm_score, num_words, base = state[prefix]
                node, done = transitions.get(node * vocab_size + token) or scorer.advance(
                    node, token
                )
                if done:
                    logp_word, context = word_scores.get(context << 32 | done) or (
                        scorer.word_score(context, done)
                    )
                    lm_score += logp_word
                    num_words += 1
                    base = alpha * lm_score + beta * num_words
                fresh.append(
                    (
                        v + base + penalty[node],
                        v,
                        prefix,
                        token,
                        (node, context, lm_score, num_words, base),
                    )
                )
        return self.prune(new_b, new_nb, fresh)

    def prune(self, new_b, new_nb, fresh):
        """Keep the ``beam`` best within ``beam_prune_logp`` of the best; make the new prefixes
        among them."""
        fusion = self.fusion
        scored = fresh
        for prefix in new_b.keys() | new_nb.keys():
            b, nb = new_b.get(prefix, NEG_INF), new_nb.get(prefix, NEG_INF)
            scored.append((_logaddexp(b, nb) + fusion[prefix], prefix, b, nb))
        cut = max(scored, key=_FIRST)[0] + self.beam_prune_logp
        scored = [s for s in scored if s[0] >= cut]
        if len(scored) > self.beam:
            scored = heapq.nlargest(self.beam, scored, key=_FIRST)
        ids, pb, pnb = [], [], []
        for s in scored:
            if len(s) == 4:  # (score, prefix, pb, pnb) of a prefix that exists
                ids.append(s[1])
                pb.append(s[2])
                pnb.append(s[3])
            else:  # (score, pnb, parent, token, state) of a new one
                ids.append(self.add(s[2], s[3], s[4]))
                pb.append(NEG_INF)
                pnb.append(s[1])
        return ids, pb, pnb

    def finish(self, ids, pb, pnb) -> list[tuple[float, float, float, int, int]]:
        """Complete each beam's last word, add ``</s>``, and rank by the full score."""
        scorer = self.scorer
        finals = []
        for prefix, b, nb in zip(ids, pb, pnb):
            am = _logaddexp(b, nb)
            node, context, lm_score, num_words, _ = self.state[prefix]
            if node:
                logp, context = scorer.word_score(context, node)
                lm_score += logp
                num_words += 1
            lm_score += scorer.end_score(context)
            score = am + self.alpha * lm_score + self.beta * num_words
            finals.append((score, am, lm_score, num_words, prefix))
        finals.sort(reverse=True)
        return finals
