"""CTC decoding: greedy, prefix beam search with word-level KenLM shallow fusion, n-best lists,
second-pass LM rescoring and word timestamps.

Tokens are a list of strings whose index 0 is the CTC blank. Three kinds of vocabulary say how
tokens make words (detected from the tokens, or given):

``character``      ``"|"`` separates words, every other token is a character;
``sentencepiece``  a piece starting with ``"▁"`` begins a new word (the ``▁`` is dropped);
``phones``         every non-blank token is a word of its own (explicit only).

Tokens written ``<...>`` (``<unk>``, ``<s>`` ...) add nothing to the text.

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
import multiprocessing as mp
import operator
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torchaudio.functional as AF

from speechssl.asr.lm import LN10, KenLM, load_lm

BLANK = 0
WORD_DELIMITER = "|"
WORD_START = "▁"
KINDS = ("character", "sentencepiece", "phones")
NEG_INF = float("-inf")
_FIRST = operator.itemgetter(0)
_SPECIAL = re.compile(r"^<[^<>]+>$")


@dataclass(frozen=True)
class DecoderConfig:
    beam: int = 32  # prefixes kept after each frame
    alpha: float = 0.5  # LM weight (natural-log LM score multiplier)
    beta: float = 1.0  # word insertion bonus, per word
    beam_prune_logp: float = -10.0  # drop beams this far below the best
    token_min_logp: float = -5.0  # per frame, only tokens above this (plus the best one)
    nbest: int = 1  # hypotheses returned by beam_search, best first, distinct texts
    # added for a partial/complete word the LM's vocabulary lacks (if the LM has a vocabulary);
    # pyctcdecode's unk_score_offset: log10 units for a complete word (see the module docstring)
    unk_score: float = -10.0
    score_boundary: bool = True  # <s> context at the start and </s> scored at the end


@dataclass
class WordAlignment:
    word: str
    start_frame: int  # first frame of the word's first token
    end_frame: int  # exclusive: one past the last frame of its last token
    confidence: float  # 0..1: the least of its tokens' peak frame posteriors


@dataclass
class Hypothesis:
    text: str
    tokens: list[int]  # the labelling (token ids, no blanks)
    am_score: float  # CTC log-probability (natural log) of the hypothesis' prefix path(s)
    lm_score: float  # unweighted natural-log LM probability of its words (+ </s> if score_boundary)
    num_words: int
    score: float  # am_score + alpha * lm_score + beta * num_words
    words: list[WordAlignment] = field(default_factory=list)


def detect_kind(tokens: Sequence[str]) -> str:
    """``character`` when ``"|"`` is a token, ``sentencepiece`` when a token starts with ``▁``."""
    if WORD_DELIMITER in tokens:
        return "character"
    if any(t.startswith(WORD_START) for t in tokens):
        return "sentencepiece"
    raise ValueError(
        "cannot tell the vocabulary kind: no '|' word delimiter and no '▁' word-start piece "
        f"among the {len(tokens)} tokens; pass kind='character', 'sentencepiece' or 'phones'"
    )


def frames_to_seconds(frame: int, stride_samples: int, sample_rate: int = 16000) -> float:
    """The time (s) where ``frame`` starts for a model emitting one frame per ``stride_samples``."""
    return frame * stride_samples / sample_rate


def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    if b == NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


class CTCDecoder:
    """Greedy and beam-search CTC decoding over ``tokens`` with an optional word n-gram LM.

    ``lm``: a :class:`~speechssl.asr.lm.KenLM`, or the path of an ARPA/binary file.
    ``kind``: ``character``/``sentencepiece``/``phones``; detected from ``tokens`` when omitted.
    """

    def __init__(
        self,
        tokens: Sequence[str],
        lm: KenLM | str | os.PathLike | None = None,
        config: DecoderConfig = DecoderConfig(),
        kind: str | None = None,
    ):
        if len(tokens) < 2 or len(set(tokens)) != len(tokens):
            raise ValueError(f"tokens must be >= 2 distinct strings (blank first), got {tokens}")
        self.tokens = list(tokens)
        self.kind = kind or detect_kind(self.tokens)
        if self.kind not in KINDS:
            raise ValueError(f"unknown vocabulary kind {self.kind!r}; one of {KINDS}")
        if config.beam < 1 or config.nbest < 1 or config.beam_prune_logp > 0:
            raise ValueError(f"need beam >= 1, nbest >= 1 and beam_prune_logp <= 0: {config}")
        self.config = config
        self.lm = None if lm is None else load_lm(lm)
        self._piece, self._starts_word, self._ends_word = self._token_roles()
        self._scorer = _WordScorer(self._piece, self._starts_word, self._ends_word, self.lm, config)

    def _token_roles(self) -> tuple[list[str], list[bool], list[bool]]:
        """Per token: the text it adds to the current word, whether it begins a new word, and
        whether it ends the current one (the word delimiter)."""
        piece, starts, ends = [], [], []
        for i, tok in enumerate(self.tokens):
            special = i == BLANK or bool(_SPECIAL.match(tok))
            if self.kind == "character":
                piece.append("" if special or tok == WORD_DELIMITER else tok)
                starts.append(False)
                ends.append(tok == WORD_DELIMITER)
            elif self.kind == "sentencepiece":
                piece.append("" if special else tok.removeprefix(WORD_START))
                starts.append(not special and tok.startswith(WORD_START))
                ends.append(False)
            else:
                piece.append("" if special else tok)
                starts.append(not special)
                ends.append(False)
        return piece, starts, ends

    def with_config(self, **changes) -> CTCDecoder:
        """The same tokens and LM with some config fields changed (e.g. an alpha/beta sweep)."""
        return CTCDecoder(self.tokens, self.lm, replace(self.config, **changes), self.kind)

    # ---- input checks -------------------------------------------------------------------------

    def _check(self, logprobs, what: str = "logprobs") -> np.ndarray:
        """(T, V) log-softmax scores as a float32 numpy array; ValueError for bad input."""
        if isinstance(logprobs, torch.Tensor):
            logprobs = logprobs.detach().to("cpu", torch.float32).numpy()
        lp = np.asarray(logprobs, dtype=np.float32)
        if lp.ndim != 2:
            raise ValueError(f"{what}: expected a (T, V) array, got shape {lp.shape}")
        if lp.shape[1] != len(self.tokens):
            raise ValueError(
                f"{what}: V = {lp.shape[1]} scores per frame but {len(self.tokens)} tokens; "
                "the model's output layer and the token list disagree"
            )
        if lp.shape[0] == 0:
            raise ValueError(f"{what}: no frames (T = 0); nothing to decode")
        if np.isnan(lp).any() or np.isposinf(lp).any():
            frame = int(np.flatnonzero(np.isnan(lp).any(1) | np.isposinf(lp).any(1))[0])
            raise ValueError(f"{what}: NaN or +inf scores (first at frame {frame})")
        norm = np.logaddexp.reduce(lp, axis=1)
        if np.abs(norm).max() > 0.05:
            frame = int(np.abs(norm).argmax())
            raise ValueError(
                f"{what}: frame {frame} is not log-normalised (logsumexp = {norm[frame]:.3f}); "
                "pass log_softmax(logits, dim=-1)"
            )
        return lp

    # ---- greedy -------------------------------------------------------------------------------

    def greedy(self, logprobs) -> Hypothesis:
        """Best path: argmax per frame, repeats merged, blanks removed. ``logprobs``: (T, V)
        log-softmax. ``am_score`` is the best path's log-probability, ``lm_score`` 0, ``score``
        ``am_score + beta * num_words``; word frames come from the best path itself."""
        lp = self._check(logprobs)
        path = lp.argmax(axis=1)
        frame_logp = lp[np.arange(len(path)), path]
        tokens, starts, ends, peaks = _token_spans(path, frame_logp)
        words = self._align_words(tokens, starts, ends, peaks)
        am = float(frame_logp.sum(dtype=np.float64))
        return Hypothesis(
            text=" ".join(w.word for w in words),
            tokens=tokens,
            am_score=am,
            lm_score=0.0,
            num_words=len(words),
            score=am + self.config.beta * len(words),
            words=words,
        )

    # ---- words --------------------------------------------------------------------------------

    def _word_positions(self, tokens: Sequence[int]) -> list[tuple[str, int, int]]:
        """(word, position of its first token, position of its last token) for a labelling,
        by the same rules the beam search applies when it completes words."""
        words = []
        word, first, last = "", -1, -1
        for pos, tok in enumerate(tokens):
            piece = self._piece[tok]
            if self._ends_word[tok] or self._starts_word[tok]:
                if word:
                    words.append((word, first, last))
                word = piece
                first = last = pos if self._starts_word[tok] else -1
            elif piece:
                word += piece
                first = pos if first < 0 else first
                last = pos
        if word:
            words.append((word, first, last))
        return words

    def _align_words(self, tokens, starts, ends, peaks) -> list[WordAlignment]:
        return [
            WordAlignment(
                word=word,
                start_frame=int(starts[first]),
                end_frame=int(ends[last]),
                confidence=float(math.exp(min(peaks[first : last + 1]))),
            )
            for word, first, last in self._word_positions(tokens)
        ]

    def _aligned_words(self, lp_torch: torch.Tensor, tokens: list[int]) -> list[WordAlignment]:
        """Word timestamps from the Viterbi (forced) alignment of ``tokens`` to the frames."""
        if not tokens:
            return []
        targets = torch.tensor([tokens], dtype=torch.int32)
        path, scores = AF.forced_align(lp_torch, targets, blank=BLANK)
        labels, starts, ends, peaks = _token_spans(path[0].numpy(), scores[0].numpy())
        if labels != tokens:  # cannot happen for a labelling the search produced from these frames
            raise RuntimeError(f"forced alignment returned {labels}, expected {tokens}")
        return self._align_words(tokens, starts, ends, peaks)

    # ---- beam search --------------------------------------------------------------------------

    def beam_search(self, logprobs) -> list[Hypothesis]:
        """The ``config.nbest`` best hypotheses (distinct texts), best first.
        ``logprobs``: (T, V) log-softmax scores of one utterance (numpy or torch)."""
        return self._beam_search(self._check(logprobs))

    def _beam_search(self, lp: np.ndarray) -> list[Hypothesis]:
        self._scorer.trim()
        search = _PrefixSearch(self, lp)
        finals = search.run()
        lp_torch = torch.from_numpy(lp).unsqueeze(0)
        out, seen = [], set()
        for score, am, lm_score, num_words, prefix in finals:
            tokens = search.labelling(prefix)
            text = " ".join(w for w, _, _ in self._word_positions(tokens))
            if text in seen:
                continue
            seen.add(text)
            words = self._aligned_words(lp_torch, tokens)
            out.append(Hypothesis(text, tokens, am, lm_score, num_words, score, words))
            if len(out) == self.config.nbest:
                break
        return out

    def decode_batch(self, logprobs_list, lengths=None, nj: int = 1) -> list[list[Hypothesis]]:
        """Beam search over a batch: a list of (T_i, V) arrays, or a padded (B, T, V) array with
        ``lengths`` (B,). ``nj`` > 1 decodes in that many forked processes."""
        if lengths is not None:
            lengths = [
                int(n) for n in (lengths.tolist() if hasattr(lengths, "tolist") else lengths)
            ]
            if len(lengths) != len(logprobs_list):
                raise ValueError(f"{len(lengths)} lengths for {len(logprobs_list)} utterances")
            logprobs_list = [x[:n] for x, n in zip(logprobs_list, lengths)]
        utts = [self._check(x, f"utterance {i}") for i, x in enumerate(logprobs_list)]
        if nj <= 1 or len(utts) <= 1:
            return [self._beam_search(x) for x in utts]
        global _FORK_JOB
        _FORK_JOB = (self, utts)  # inherited by the forked workers: neither is pickled
        try:
            with mp.get_context("fork").Pool(min(nj, len(utts))) as pool:
                return pool.map(_decode_forked, range(len(utts)), chunksize=1)
        finally:
            _FORK_JOB = None


_FORK_JOB: tuple[CTCDecoder, list[np.ndarray]] | None = None


def _decode_forked(index: int) -> list[Hypothesis]:
    decoder, utts = _FORK_JOB
    return decoder._beam_search(utts[index])


class _WordScorer:
    """The word-level side of the search, with caches shared by all utterances of a decoder.

    A partial word is a node: an id of its string. With an LM vocabulary, the strings that begin
    no vocabulary word are known only by their length (KenLM scores every OOV word alike, as
    ``<unk>``; the partial-word penalty grows with the length). An LM context is an id of a
    KenLM state. Tokens move nodes through cached transitions; a word is scored once per
    (context, node).
    """

    MAX_CACHED = 2_000_000  # entries before the caches are dropped (between utterances)
    AVG_WORD_LEN = 6  # partial OOV words longer than this are penalised in proportion (pyctcdecode)

    def __init__(self, piece, starts_word, ends_word, lm: KenLM | None, config: DecoderConfig):
        self.piece, self.starts_word, self.ends_word = piece, starts_word, ends_word
        self.vocab_size = len(piece)
        self.lm, self.config = lm, config
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
            cfg = self.config
            start = self.lm.begin_state() if cfg.score_boundary else self.lm.null_state()
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
            self.penalty.append(self.config.unk_score * scale if oov else 0.0)
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
                logp += self.config.unk_score * LN10
            hit = self.word_scores[context << 32 | node] = (logp, self.context_id(state))
        return hit

    def end_score(self, context: int) -> float:
        if self.lm is None or not self.config.score_boundary:
            return 0.0
        score = self.end_scores.get(context)
        if score is None:
            score = self.end_scores[context] = self.lm.end_score(self.contexts[context])
        return score


class _PrefixSearch:
    """One utterance's prefix beam search.

    Prefixes live in a tree of parallel lists indexed by prefix id (0: the empty prefix). A beam
    is (ids, pb, pnb): prefix ids and the log-probabilities of their paths that end in a blank /
    in the prefix's last token.
    """

    def __init__(self, decoder: CTCDecoder, lp: np.ndarray):
        self.config = decoder.config
        self.scorer = decoder._scorer
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
        lp, cfg = self.lp, self.config
        num_frames = lp.shape[0]
        frames = np.arange(num_frames)
        best = lp.argmax(axis=1)
        candidates = lp >= cfg.token_min_logp
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
        alpha, beta = self.config.alpha, self.config.beta
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
        cut = max(scored, key=_FIRST)[0] + self.config.beam_prune_logp
        scored = [s for s in scored if s[0] >= cut]
        if len(scored) > self.config.beam:
            scored = heapq.nlargest(self.config.beam, scored, key=_FIRST)
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
        scorer, cfg = self.scorer, self.config
        finals = []
        for prefix, b, nb in zip(ids, pb, pnb):
            am = _logaddexp(b, nb)
            node, context, lm_score, num_words, _ = self.state[prefix]
            if node:
                logp, context = scorer.word_score(context, node)
                lm_score += logp
                num_words += 1
            lm_score += scorer.end_score(context)
            score = am + cfg.alpha * lm_score + cfg.beta * num_words
            finals.append((score, am, lm_score, num_words, prefix))
        finals.sort(reverse=True)
        return finals


def _token_spans(path: np.ndarray, frame_logp: np.ndarray):
    """The tokens of a frame-level CTC path (T,) with, per token, its first frame, one past its
    last frame and its peak log-posterior along the path (``frame_logp``, (T,))."""
    run_starts = np.flatnonzero(np.r_[True, path[1:] != path[:-1]])
    run_ends = np.r_[run_starts[1:], len(path)]
    peaks = np.maximum.reduceat(frame_logp, run_starts)
    labels = path[run_starts]
    keep = labels != BLANK
    return labels[keep].tolist(), run_starts[keep], run_ends[keep], peaks[keep].tolist()


def rescore_nbest(
    nbest: list[Hypothesis],
    lm: KenLM | str | os.PathLike,
    alpha: float,
    beta: float,
    *,
    unk_score: float = DecoderConfig.unk_score,
    score_boundary: bool = True,
) -> list[Hypothesis]:
    """Replace each hypothesis' LM score with ``lm``'s (e.g. a higher-order LM than the one used
    in the search; ``unk_score`` added per OOV word) and re-rank by
    ``am_score + alpha * lm_score + beta * num_words``."""
    lm = load_lm(lm)
    rescored = []
    for hyp in nbest:
        words = hyp.text.split()
        lm_score = lm.sentence_score(words, bos=score_boundary, eos=score_boundary)
        lm_score += unk_score * LN10 * sum(lm.is_oov(w) for w in words)
        score = hyp.am_score + alpha * lm_score + beta * hyp.num_words
        rescored.append(replace(hyp, lm_score=lm_score, score=score))
    return sorted(rescored, key=lambda h: h.score, reverse=True)


def simulate_ctc_emissions(
    labellings: Sequence[Sequence[int]],
    vocab_size: int,
    rng: np.random.Generator,
    *,
    margin: tuple[float, float] = (7.5, 1.5),
    noise: float = 1.0,
    frames_per_token: tuple[int, int] = (1, 2),
    blanks_between: tuple[int, int] = (0, 2),
    confusions: dict[int, Sequence[int]] | None = None,
    confusion_rate: float = 0.05,
    confusion_gap: tuple[float, float] = (0.5, 3.0),
) -> list[np.ndarray]:
    """Peaky CTC log-posteriors (T_i, V) for known labellings, for testing decoders without a
    model: each token held for ``frames_per_token`` frames with ``blanks_between`` blank frames
    around (at least one between equal tokens); logits N(0, ``noise``) plus a N(``margin``)
    bump on the frame's label. With probability ``confusion_rate`` a token listed in
    ``confusions`` shows as one of its confusable tokens instead, the true token trailing it by
    U(``confusion_gap``) nats: the errors an LM can undo."""
    confusions = confusions or {}
    out = []
    for labelling in labellings:
        shown, true = [], []
        for i, token in enumerate(labelling):
            blanks = int(rng.integers(blanks_between[0], blanks_between[1] + 1))
            if i > 0 and labelling[i - 1] == token:
                blanks = max(blanks, 1)
            shown += [BLANK] * blanks
            true += [BLANK] * blanks
            seen = token
            if token in confusions and rng.random() < confusion_rate:
                seen = int(rng.choice(confusions[token]))
            hold = int(rng.integers(frames_per_token[0], frames_per_token[1] + 1))
            shown += [seen] * hold
            true += [token] * hold
        tail = int(rng.integers(blanks_between[0], blanks_between[1] + 1))
        shown, true = np.array(shown + [BLANK] * tail), np.array(true + [BLANK] * tail)
        frames = np.arange(len(shown))
        logits = noise * rng.standard_normal((len(shown), vocab_size))
        bump = np.maximum(rng.normal(margin[0], margin[1], len(shown)), 1.0)
        logits[frames, shown] += bump
        confused = shown != true
        gap = rng.uniform(*confusion_gap, confused.sum())
        logits[frames[confused], true[confused]] += bump[confused] - gap
        logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
        out.append(logp.astype(np.float32))
    return out


def build_pyctcdecode(
    tokens: Sequence[str],
    arpa: str | os.PathLike | None = None,
    config: DecoderConfig = DecoderConfig(),
    fix_final_word: bool = True,
):
    """pyctcdecode 0.5.0's decoder for the same tokens, LM and weights: the second
    implementation the tests and ``bench/decode.py`` compare against. Decode with
    ``decode_beams(lp, beam_width=config.beam, beam_prune_logp=config.beam_prune_logp,
    token_min_logp=config.token_min_logp, prune_history=False)``.

    Mapping: blank -> ``""``, ``"|"`` -> ``" "``, ``<unk>`` -> ``"⁇"`` (pyctcdecode's own
    ``▁⁇▁`` sets a break flag shared by all beams); ``unk_score`` -> ``unk_score_offset`` (the
    same units). ``fix_final_word``: 0.5.0 scores the empty word
    left when a text ends in a delimiter as an OOV word (unk offset, beta) at the end of the
    utterance, and merging keeps whichever of two equal texts came first, so a correct text can
    lose to a worse one; the fix scores only ``</s>`` there, as this module does.
    """
    from pyctcdecode import build_ctcdecoder
    from pyctcdecode.constants import LOG_BASE_CHANGE_FACTOR
    from pyctcdecode.language_model import LanguageModel

    labels = []
    for i, tok in enumerate(tokens):
        labels.append("" if i == BLANK else {"|": " ", "<unk>": "⁇"}.get(tok, tok))
    decoder = build_ctcdecoder(
        labels,
        kenlm_model_path=None if arpa is None else str(arpa),
        alpha=config.alpha,
        beta=config.beta,
        unk_score_offset=config.unk_score,
        lm_score_boundary=config.score_boundary,
    )

    class _FinalWordFixed(LanguageModel):
        def score(self, prev_state, word, is_last_word=False):
            if word == "" and is_last_word:
                end = self._get_raw_end_score(prev_state) * LOG_BASE_CHANGE_FACTOR
                return self.alpha * end, prev_state
            return super().score(prev_state, word, is_last_word)

    if fix_final_word and arpa is not None:
        decoder._language_model.__class__ = _FinalWordFixed
    return decoder
