"""CTC decoding: greedy, prefix beam search with word-level KenLM shallow fusion, n-best lists,
second-pass LM rescoring and word timestamps.

Tokens are a list of strings whose index 0 is the CTC blank. Three kinds of vocabulary say how
tokens make words (detected from the tokens, or given):

``character``      ``"|"`` separates words, every other token is a character;
``sentencepiece``  a piece starting with ``"▁"`` begins a new word (the ``▁`` is dropped);
``phones``         every non-blank token is a word of its own (explicit only).

Tokens written ``<...>`` (``<unk>``, ``<s>`` ...) add nothing to the text.

The beam search itself (prefix search, LM fusion, scoring conventions):
:mod:`speechssl.asr.prefix_search`.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torchaudio.functional as AF

from speechssl.asr.batch_search import BatchPrefixSearch
from speechssl.asr.lm import LN10, KenLM, load_lm
from speechssl.asr.prefix_search import BLANK, PrefixSearch, WordScorer

WORD_DELIMITER = "|"
WORD_START = "▁"
KINDS = ("character", "sentencepiece", "phones")
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
    # pyctcdecode's unk_score_offset: log10 units for a complete word (see prefix_search.py)
    unk_score: float = -10.0
    score_boundary: bool = True  # <s> context at the start and </s> scored at the end
    # beam search: tokens written <...> (no text) count as blank, so hypotheses that differ only
    # by them are one (their paths add up to P(text)) instead of filling the beam with copies
    specials_as_blank: bool = True


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
        self._scorer = WordScorer(
            self._piece,
            self._starts_word,
            self._ends_word,
            self.lm,
            unk_score=config.unk_score,
            score_boundary=config.score_boundary,
        )
        self._batch_searches: dict = {}  # device -> BatchPrefixSearch, built at first use
        specials = [i for i, t in enumerate(self.tokens) if i != BLANK and _SPECIAL.match(t)]
        self._specials = specials if config.specials_as_blank else []

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
        return self._greedy_hypothesis(
            tokens, starts, ends, peaks, float(frame_logp.sum(dtype=np.float64))
        )

    def greedy_batch(self, logprobs: torch.Tensor, lengths=None) -> list[Hypothesis]:
        """:meth:`greedy` for each utterance of a padded ``(B, T, V)`` tensor (``lengths``: (B,)
        frames), decoded where it lies: on a GPU one Triton kernel reads the scores once
        (:mod:`speechssl.kernels.ctc_greedy`) and only the tokens' frame spans and peaks come
        to the host. Unlike :meth:`greedy` it does not check that the frames are log-normalised
        (that would read the scores again); an utterance of no frames gives an empty text."""
        if logprobs.dim() != 3 or logprobs.shape[2] != len(self.tokens):
            raise ValueError(
                f"expected (B, T, V = {len(self.tokens)}) log-probabilities, "
                f"got {tuple(logprobs.shape)}"
            )
        # triton is imported at first use: a process decides its interpreter mode first
        from speechssl.kernels.ctc_greedy import ctc_greedy_spans

        spans = ctc_greedy_spans(logprobs.detach(), lengths, blank=BLANK)
        return [
            self._greedy_hypothesis(s.tokens, s.starts, s.ends, s.peaks, s.path_score)
            for s in spans
        ]

    def _greedy_hypothesis(self, tokens, starts, ends, peaks, am: float) -> Hypothesis:
        words = self._align_words(tokens, starts, ends, peaks)
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

    def search_logprobs(self, lp):
        """(..., V) log-probabilities (numpy or torch) as the beam search reads them: with
        ``specials_as_blank``, the special tokens' probability moved to the blank."""
        if not self._specials:
            return lp
        cols = [BLANK, *self._specials]
        if isinstance(lp, torch.Tensor):
            out = lp.clone()
            out[..., BLANK] = lp[..., cols].float().logsumexp(-1).to(lp.dtype)
        else:
            out = lp.copy()
            out[..., BLANK] = np.logaddexp.reduce(lp[..., cols], axis=-1)
        out[..., self._specials] = -np.inf
        return out

    def prefix_beams(self, lp: np.ndarray) -> list[tuple[float, float, float, int, list[int]]]:
        """The CPU prefix search's final beams of one utterance ((T, V) float32 log-softmax) as
        (score, am, lm, num_words, labelling), best first: the reference of the batched search."""
        self._scorer.trim()
        cfg = self.config
        search = PrefixSearch(
            self._scorer,
            self.search_logprobs(lp),
            beam=cfg.beam,
            beam_prune_logp=cfg.beam_prune_logp,
            token_min_logp=cfg.token_min_logp,
            alpha=cfg.alpha,
            beta=cfg.beta,
        )
        return [(s, am, lm, n, search.labelling(p)) for s, am, lm, n, p in search.run()]

    def _beam_search(self, lp: np.ndarray) -> list[Hypothesis]:
        return self._hypotheses(torch.from_numpy(lp).unsqueeze(0), self.prefix_beams(lp))

    def _hypotheses(self, lp_torch: torch.Tensor, beams) -> list[Hypothesis]:
        """The ``config.nbest`` best of ``beams`` ((score, am, lm, num_words, tokens), best
        first) with distinct texts, words aligned to ``lp_torch`` (1, T, V)."""
        out, seen = [], set()
        for score, am, lm_score, num_words, tokens in beams:
            text = " ".join(w for w, _, _ in self._word_positions(tokens))
            if text in seen:
                continue
            seen.add(text)
            words = self._aligned_words(lp_torch, tokens)
            out.append(Hypothesis(text, tokens, am, lm_score, num_words, score, words))
            if len(out) == self.config.nbest:
                break
        return out

    def decode_batch(
        self, logprobs_list, lengths=None, nj: int = 1, device: str | torch.device | None = None
    ) -> list[list[Hypothesis]]:
        """Beam search over a batch: a list of (T_i, V) arrays, or a padded (B, T, V) array with
        ``lengths`` (B,). ``nj`` > 1 decodes in that many forked processes.

        ``device``: None runs the CPU prefix search above; a torch device (``cuda``) runs the
        batched tensor search (:mod:`speechssl.asr.batch_search`) there, on ``BATCH_UTTS``
        utterances at a time, with the same n-best lists."""
        if device is not None:
            return self._decode_batched(logprobs_list, lengths, torch.device(device))
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

    BATCH_UTTS = 64  # utterances per batched search (sorted by length: little padding)

    def _decode_batched(self, logprobs, lengths, device: torch.device) -> list[list[Hypothesis]]:
        if lengths is None:
            lengths = [len(x) for x in logprobs]
        lengths = [int(n) for n in (lengths.tolist() if hasattr(lengths, "tolist") else lengths)]
        if len(lengths) != len(logprobs):
            raise ValueError(f"{len(lengths)} lengths for {len(logprobs)} utterances")
        utts = [_as_tensor(x)[:n] for x, n in zip(logprobs, lengths)]
        for i, x in enumerate(utts):
            _check_tensor(x, len(self.tokens), f"utterance {i}")
        search = self._batch_searches.get(device)
        if search is None:
            search = self._batch_searches[device] = BatchPrefixSearch(self, device)
        order = sorted(range(len(utts)), key=lambda i: len(utts[i]))
        out: list[list[Hypothesis]] = [[] for _ in utts]
        for start in range(0, len(order), self.BATCH_UTTS):
            batch = order[start : start + self.BATCH_UTTS]
            padded = torch.nn.utils.rnn.pad_sequence([utts[i] for i in batch], batch_first=True)
            finals = search(padded.to(device), torch.tensor([len(utts[i]) for i in batch]))
            for i, beams in zip(batch, finals, strict=True):
                lp_cpu = utts[i].to("cpu", torch.float32).unsqueeze(0)
                rows = ((h.score, h.am_score, h.lm_score, h.num_words, h.tokens) for h in beams)
                out[i] = self._hypotheses(lp_cpu, rows)
        return out


def _as_tensor(x) -> torch.Tensor:
    return x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))


def _check_tensor(lp: torch.Tensor, vocab_size: int, what: str) -> None:
    """The checks of ``CTCDecoder._check`` on a tensor, where it lies (no copy to the host)."""
    if lp.dim() != 2 or lp.shape[1] != vocab_size or lp.shape[0] == 0:
        raise ValueError(
            f"{what}: expected (T > 0, V = {vocab_size}) log-probabilities, got {tuple(lp.shape)}"
        )
    lp = lp.float()
    if bool((lp.isnan() | lp.isposinf()).any()):
        raise ValueError(f"{what}: NaN or +inf scores")
    norm = lp.logsumexp(1).abs().max()
    if float(norm) > 0.05:
        raise ValueError(f"{what}: not log-normalised; pass log_softmax(logits, dim=-1)")


_FORK_JOB: tuple[CTCDecoder, list[np.ndarray]] | None = None


def _decode_forked(index: int) -> list[Hypothesis]:
    decoder, utts = _FORK_JOB
    return decoder._beam_search(utts[index])


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
