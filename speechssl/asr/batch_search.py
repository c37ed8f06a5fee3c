"""The CTC prefix beam search of :mod:`speechssl.asr.prefix_search` for a whole batch at once,
in tensor operations that run on a GPU (or, the same code, on the CPU for the tests).

State per utterance and beam slot, all ``(B, K)`` tensors: the log-probabilities of the paths
ending in blank / in the last token (``pb``, ``pnb``, float64), the last token, a 64-bit hash of
the labelling and of its parent (prefix merging: beam k' extends beam k by token c iff
``parent_hash[k'] == hash[k]`` and ``last[k'] == c``), the partial word (a node of the LM
vocabulary's trie, or an out-of-vocabulary word by its length), the LM state, the LM score,
the word count and the fusion score. Each step builds the ``K + K * C`` candidates (the beams
themselves after a blank or a repeat; each beam extended by each of the frame's ``C`` tokens
above ``token_min_logp``), merges extensions into the beams they equal, prunes by
``beam_prune_logp`` and keeps the ``K`` best with one ``topk``. Backpointers (source slot,
emitted token) per step give the labellings and the frame where each token was emitted.

Frames come as *events*, exactly as the CPU search groups them: a run of frames whose only
candidate is the blank is one step (``pb`` = total + the run's blank log-probability, no
re-ranking); in a run of frames whose only candidate is one token, the frames after the first
shift every beam alike and are added after the first frame's step. ``blank_skip`` (a
probability, off at 1.0) also treats a frame whose blank posterior is at least that as blank-
only, as torchaudio's ``cuda_ctc_decoder`` does: faster, no longer exact.

Scores follow :mod:`speechssl.asr.prefix_search` (word-level LM at word ends, ``unk_score`` per
OOV word and for OOV partial words, ``beta`` per word, ``<s>``/``</s>``), so both searches give
the same n-best lists; ``tests/test_batch_search.py`` checks ids and scores against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from speechssl.asr.lm import LN10
from speechssl.asr.ngram_tensor import load_tensor_lm
from speechssl.asr.prefix_search import BLANK, WordScorer
from speechssl.asr.trie_lexicon import TrieLexicon

NEG_INF = float("-inf")
_HASH_MUL = 6364136223846793005  # 64-bit LCG constants (Knuth): labelling hashes
_HASH_ADD = 1442695040888963407
_ROOT_HASH = 0x5EED


@dataclass
class BatchHypothesis:
    tokens: list[int]  # the labelling
    frames: list[int]  # the frame where the search emitted each token
    score: float  # am + alpha * lm + beta * num_words
    am_score: float
    lm_score: float
    num_words: int


@dataclass
class _Run:
    """One batch's search: its inputs by step (``frame``, ``blank``, ``shift``, ``active``:
    (B, E)), the step number (a (1,) device tensor), the beams' state and the trace."""

    lp: torch.Tensor
    frame: torch.Tensor
    blank: torch.Tensor
    shift: torch.Tensor
    active: torch.Tensor
    step: torch.Tensor
    state: dict[str, torch.Tensor]
    src: torch.Tensor  # (E, B, K) the slot each beam came from
    tok: torch.Tensor  # (E, B, K) the token it emitted, -1 for none


class BatchPrefixSearch:
    """Batched CTC prefix beam search with the decoder's tokens, LM and config on ``device``.

    ``decoder``: a :class:`speechssl.asr.decode.CTCDecoder` (its LM must be an ARPA file, or a
    binary one beside its ``.arpa``); ``blank_skip``: see the module docstring; ``compile``:
    each step, the state update included, through ``torch.compile`` (on a GPU its ~180 small
    kernels fused into a few generated Triton kernels, the step's launches being what limits
    the search there; tens of seconds to compile at the first batch of each shape).
    """

    def __init__(
        self,
        decoder,
        device: str | torch.device = "cpu",
        blank_skip: float = 1.0,
        compile: bool = False,
    ):
        self.device = torch.device(device)
        self.config = cfg = decoder.config
        self._search_logprobs = decoder.search_logprobs
        if cfg.beam > 128:
            raise ValueError(f"the batched beam search takes beam <= 128, got {cfg.beam}")
        self.lm = None
        if decoder.lm is not None:
            arpa = decoder.lm.arpa
            if arpa is None:
                path = decoder.lm.path
                raise ValueError(
                    f"the batched beam search reads the LM's ARPA file: {path} is binary and "
                    f"has no {path.with_suffix('.arpa').name} beside it"
                )
            self.lm = load_tensor_lm(arpa, self.device)
        self.lexicon = TrieLexicon(decoder._scorer, self.lm, self.device)
        self.log_blank_skip = math.log(blank_skip) if blank_skip < 1.0 else math.inf
        self.compiled = compile
        if compile:  # the whole step with its state update: one graph, few fused kernels
            self._full_step = torch.compile(self._full_step, dynamic=False)
        # at most e^-m tokens have log-probability >= m: the candidates a frame can have
        self.max_candidates = min(len(decoder.tokens), int(math.exp(-cfg.token_min_logp)) + 1)

    # ---- word-level side -------------------------------------------------------------------

    def _penalty(self, node: torch.Tensor) -> torch.Tensor:
        if self.lm is None:
            return torch.zeros(node.shape, dtype=torch.float64, device=node.device)
        scale = (self.lexicon.length(node).double() / WordScorer.AVG_WORD_LEN).clamp(min=1.0)
        return torch.where(node < 0, self.config.unk_score * scale, 0.0)

    def _word_score(self, context: torch.Tensor, node: torch.Tensor):
        """(ln P_lm of completing partial word ``node`` [+ unk_score * ln 10 if OOV], next
        context); 0 and the same context without an LM."""
        if self.lm is None:
            return torch.zeros(node.shape, dtype=torch.float64, device=node.device), context
        word = torch.where(node > 0, self.lexicon.node_word[node.clamp(min=0)], self.lm.unk)
        logp, nxt = self.lm.score(context, word)
        return torch.where(word == self.lm.unk, logp + self.config.unk_score * LN10, logp), nxt

    # ---- frames to events --------------------------------------------------------------------

    def _events(self, lp: torch.Tensor, lengths: torch.Tensor):
        """Per utterance its steps: (B, E) first frame, blank-run flag, log-probability added
        after the step (a blank run's total, a single-token run's frames after the first), and
        the (B,) number of steps."""
        b, t, _ = lp.shape
        cfg = self.config
        frames = torch.arange(t, device=lp.device)
        best_lp, best = lp.max(-1)
        count = (lp >= cfg.token_min_logp).sum(-1) + (best_lp < cfg.token_min_logp).long()
        blank_only = (count == 1) & (best == BLANK)
        blank_only |= lp[..., BLANK] >= self.log_blank_skip
        single = (count == 1) | blank_only
        label = torch.where(single, torch.where(blank_only, BLANK, best), -1 - frames)
        valid = frames[None, :] < lengths[:, None]
        label = torch.where(valid, label, -2 - t)
        start = torch.ones_like(valid)
        start[:, 1:] = label[:, 1:] != label[:, :-1]
        start &= valid
        index = start.long().cumsum(1) - 1  # the event of each frame
        num_events = start.sum(1)
        e_max = int(num_events.max())
        ev_frame = torch.zeros(b, e_max, dtype=torch.int64, device=lp.device)
        rows, cols = start.nonzero(as_tuple=True)
        ev_frame[rows, index[rows, cols]] = cols
        held = torch.where(blank_only, lp[..., BLANK], best_lp).double()
        held = torch.where(valid, held, 0.0)
        run_total = torch.zeros(b, e_max, dtype=torch.float64, device=lp.device)
        run_total.scatter_add_(1, index.clamp(min=0), held)
        ev_blank = blank_only.gather(1, ev_frame)
        first = held.gather(1, ev_frame)
        shift = torch.where(ev_blank, run_total, run_total - first)
        ev_active = torch.arange(e_max, device=lp.device)[None, :] < num_events[:, None]
        ev_count = count.gather(1, ev_frame)
        return ev_frame, ev_blank & ev_active, shift, ev_active, ev_count

    # ---- the search ----------------------------------------------------------------------------

    def __call__(
        self,
        logprobs: torch.Tensor,
        lengths: torch.Tensor | None = None,
        top: int | None = None,
        static: bool | None = None,
    ) -> list[list[BatchHypothesis]]:
        """``(B, T, V)`` log-softmax scores (float32 or bf16) and ``(B,)`` frames -> per
        utterance the final beams (the ``top`` best, default all) as
        :class:`BatchHypothesis`, best first.

        ``static`` (default: on a GPU, or compiled): every step has the same shapes (all
        ``max_candidates`` candidate slots, the unused ones -inf) and reads its step number
        from a device tensor, so on a GPU one step is captured as a CUDA graph and replayed
        (no per-kernel launch cost); off, each step takes only as many candidate slots as its
        frames need."""
        lp = self._search_logprobs(logprobs.to(self.device))
        b, t, v = lp.shape
        if lengths is None:
            lengths = torch.full((b,), t)
        lengths = lengths.to(self.device, torch.int64)
        ev_frame, ev_blank, shift, ev_active, ev_count = self._events(lp, lengths)
        # one host sync: per step, whether any utterance needs the full step and its candidates
        normal = (ev_active & ~ev_blank).any(0)
        cand = torch.where(ev_active & ~ev_blank, ev_count, 0).amax(0).clamp(min=1)
        normal, cand = normal.tolist(), cand.clamp(max=self.max_candidates).tolist()
        if static is None:  # compiled: one shape, else a compile per candidate count
            static = self.device.type == "cuda" or self.compiled
        steps, k = len(normal), self.config.beam
        run = _Run(
            lp=lp, frame=ev_frame, blank=ev_blank, shift=shift, active=ev_active,
            step=torch.zeros(1, dtype=torch.int64, device=self.device), state=self._initial(b),
            src=torch.empty(steps, b, k, dtype=torch.int16, device=self.device),
            tok=torch.empty(steps, b, k, dtype=torch.int32, device=self.device),
        )  # fmt: skip
        if static and self.device.type == "cuda":
            self._replay(run, normal)
        else:
            for full, c in zip(normal, cand):
                self._advance(run, full, self.max_candidates if static else c)
        return self._finish(run.state, run.src, run.tok, ev_frame, top or self.config.beam)

    def _advance(self, run: _Run, full: bool, num_cand: int) -> None:
        """Step ``run.step`` for every utterance, in place (the state, the trace, the step)."""
        b = run.lp.shape[0]
        at = run.step.expand(b)[:, None]
        blank_run, active = run.blank.gather(1, at)[:, 0], run.active.gather(1, at)[:, 0]
        shift = run.shift.gather(1, at)
        if full:
            rows = run.lp[torch.arange(b, device=self.device), run.frame.gather(1, at)[:, 0]]
            src, tok = self._full_step(run.state, rows, blank_run, active, shift, num_cand)
        else:
            src = self._identity(b)
            tok = torch.full_like(src, -1)
            self._update(run.state, dict(run.state), blank_run, active, shift)
        run.src.index_copy_(0, run.step, src[None].to(run.src.dtype))
        run.tok.index_copy_(0, run.step, tok[None].to(run.tok.dtype))
        run.step.add_(1)

    def _full_step(self, state, rows, blank_run, active, shift, num_cand: int):
        """A full step of ``state`` in place from the frame's ``rows`` (B, V); the new slots'
        sources and tokens. Its inputs are (B, ...) only, so ``compile`` builds it once per
        batch size, whatever the utterances' lengths."""
        new, src, tok = self._step(state, rows.double(), num_cand)
        keep = ~active | blank_run
        new = {k: torch.where(_col(keep, x), state[k], x) for k, x in new.items()}
        src = torch.where(keep[:, None], self._identity(rows.shape[0]), src)
        tok = torch.where(keep[:, None], -1, tok)
        self._update(state, new, blank_run, active, shift)
        return src, tok

    @staticmethod
    def _update(state, new, blank_run, active, shift) -> None:
        """``state`` := ``new`` with a blank run's or a single-token run's held frames added."""
        total = torch.logaddexp(state["pb"], state["pnb"])
        new["pb"] = torch.where(blank_run[:, None], total + shift, new["pb"])
        new["pnb"] = torch.where(blank_run[:, None], NEG_INF, new["pnb"])
        stepped = active & ~blank_run
        new["pnb"] = torch.where(stepped[:, None], new["pnb"] + shift, new["pnb"])
        for key, value in new.items():
            state[key].copy_(value)

    def _replay(self, run: _Run, normal: list[bool]) -> None:
        """The steps with one full step captured as a CUDA graph (warmed up on a side stream,
        as capture requires); steps where every utterance is in a blank run stay eager."""
        saved = {key: x.clone() for key, x in run.state.items()}
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            self._advance(run, True, self.max_candidates)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._advance(run, True, self.max_candidates)
        for key, x in saved.items():  # capture ran nothing; the warm-up step is undone
            run.state[key].copy_(x)
        run.step.zero_()
        for full in normal:
            if full:
                graph.replay()
            else:
                self._advance(run, False, self.max_candidates)

    def _identity(self, b: int) -> torch.Tensor:
        return torch.arange(self.config.beam, device=self.device).expand(b, -1)

    def _initial(self, b: int) -> dict[str, torch.Tensor]:
        k, dev = self.config.beam, self.device
        pb = torch.full((b, k), NEG_INF, dtype=torch.float64, device=dev)
        pb[:, 0] = 0.0
        start = 0
        if self.lm is not None:
            start = self.lm.begin_state if self.config.score_boundary else self.lm.null_state
        zeros = torch.zeros((b, k), dtype=torch.int64, device=dev)
        dead = -torch.arange(k, device=dev).expand(b, -1) - 10  # unique, never a real hash
        return {
            "pb": pb,
            "pnb": torch.full_like(pb, NEG_INF),
            "last": zeros.clone(),
            "hash": torch.where(dead == -10, _ROOT_HASH, dead),
            "parent": dead - k,
            "node": zeros.clone(),
            "context": zeros + start,
            "lm": torch.zeros_like(pb),
            "words": zeros.clone(),
            "fusion": torch.zeros_like(pb),
        }

    def _step(self, s: dict[str, torch.Tensor], rows: torch.Tensor, num_cand: int):
        """One frame for every utterance (``rows``: (B, V) float64 log-probabilities): the
        state after it, and per new slot its source slot and emitted token (-1: none)."""
        new_b, new_nb, cand, ext = self._extend(s, rows, num_cand)
        fresh = self._fresh(s, cand)
        return self._select(s, new_b, new_nb, cand, ext, fresh)

    def _extend(self, s: dict[str, torch.Tensor], rows: torch.Tensor, num_cand: int):
        """CTC side: each beam after a blank (``new_b``) or a repeat (``new_nb``), and its
        extensions (B, K * C) by the frame's candidates ``cand`` (B, C); an extension that is
        a beam already (prefix merging) is added to that beam's ``new_nb`` and dropped."""
        cfg = self.config
        b, k = s["pb"].shape
        best = rows.amax(1, keepdim=True)
        ok = (rows >= cfg.token_min_logp) | (rows == best)  # the frame's candidates
        total = torch.logaddexp(s["pb"], s["pnb"])
        blank = torch.where(ok[:, BLANK], rows[:, BLANK], NEG_INF)
        new_b = total + blank[:, None]
        last = s["last"]
        repeat_ok = ok.gather(1, last) & (last != BLANK)
        new_nb = torch.where(repeat_ok, s["pnb"] + rows.gather(1, last), NEG_INF)
        cand_lp, cand = torch.where(ok, rows, NEG_INF).topk(num_cand, dim=1)
        cand_lp = torch.where(cand == BLANK, NEG_INF, cand_lp)
        same = cand[:, None, :] == last[:, :, None]  # a repeat needs a blank in between
        ext = torch.where(same, s["pb"][:, :, None], total[:, :, None]) + cand_lp[:, None, :]
        # the extension of beam k by token last[k'] is beam k' itself if k' extends k
        parent = s["hash"][:, None, :] == s["parent"][:, :, None]  # (B, K', K)
        pos_match = same & (cand_lp[:, None, :] > NEG_INF)  # (B, K', C): last[k'] offered
        merge = parent.any(-1) & pos_match.any(-1)
        idx = parent.int().argmax(-1) * num_cand + pos_match.int().argmax(-1)
        flat = ext.view(b, k * num_cand)
        new_nb = torch.logaddexp(new_nb, torch.where(merge, flat.gather(1, idx), NEG_INF))
        return new_b, new_nb, cand, _drop(flat, idx, merge)

    def _fresh(self, s: dict[str, torch.Tensor], cand: torch.Tensor) -> dict[str, torch.Tensor]:
        """Word side of every extension (B, K, C): partial word, LM context, LM score, words,
        fusion score (alpha * lm + beta * words + the partial-word penalty)."""
        cfg = self.config
        b, k = s["node"].shape
        node = s["node"][:, :, None].expand(b, k, cand.shape[1])
        new_node, done = self.lexicon.advance(node, cand[:, None, :].expand_as(node))
        wscore, wcontext = self._word_score(s["context"], s["node"])
        lm = s["lm"][:, :, None] + torch.where(done, wscore[:, :, None], 0.0)
        words = s["words"][:, :, None] + done.long()
        return {
            "node": new_node,
            "context": torch.where(done, wcontext[:, :, None], s["context"][:, :, None]),
            "lm": lm,
            "words": words,
            "fusion": cfg.alpha * lm + cfg.beta * words + self._penalty(new_node),
        }

    def _select(self, s, new_b, new_nb, cand, ext, fresh):
        """Prune by ``beam_prune_logp`` and keep the K best of the beams and extensions."""
        b, k = s["pb"].shape
        num_cand = cand.shape[1]
        exist = torch.logaddexp(new_b, new_nb) + s["fusion"]
        scores = torch.cat([exist, ext + fresh["fusion"].view(b, -1)], 1)
        cut = scores.amax(1, keepdim=True) + self.config.beam_prune_logp
        top, sel = torch.where(scores >= cut, scores, NEG_INF).topk(k, dim=1)
        alive, is_old = top > NEG_INF, sel < k
        fresh_idx = (sel - k).clamp(min=0)
        src = torch.where(is_old, sel, fresh_idx // num_cand)

        def pick(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
            return torch.where(is_old, old.gather(1, src), new.reshape(b, -1).gather(1, fresh_idx))

        tok = cand.gather(1, fresh_idx % num_cand)
        src_hash = s["hash"].gather(1, src)
        child_hash = src_hash * _HASH_MUL + (tok + 1) * _HASH_ADD
        dead = -torch.arange(k, device=self.device).expand(b, -1) - 10
        new = {
            "pb": torch.where(is_old & alive, new_b.gather(1, src), NEG_INF),
            "pnb": torch.where(alive, pick(new_nb, ext), NEG_INF),
            "last": torch.where(is_old, s["last"].gather(1, src), tok),
            "hash": torch.where(alive, torch.where(is_old, src_hash, child_hash), dead),
            "parent": torch.where(
                alive, torch.where(is_old, s["parent"].gather(1, src), src_hash), dead - k
            ),
            **{key: pick(s[key], fresh[key]) for key in fresh},
        }
        return new, src, torch.where(is_old | ~alive, -1, tok)

    def _finish(self, s, src, tok, ev_frame, top) -> list[list[BatchHypothesis]]:
        """Complete each beam's last word, add ``</s>``, rank; labellings from the trace."""
        cfg = self.config
        am = torch.logaddexp(s["pb"], s["pnb"])
        has_word = s["node"] != 0
        wscore, wcontext = self._word_score(s["context"], s["node"])
        lm = s["lm"] + torch.where(has_word, wscore, 0.0)
        words = s["words"] + has_word.long()
        if self.lm is not None and cfg.score_boundary:
            context = torch.where(has_word, wcontext, s["context"])
            lm = lm + self.lm.score(context, torch.full_like(context, self.lm.eos))[0]
        score = torch.where(am > NEG_INF, am + cfg.alpha * lm + cfg.beta * words, NEG_INF)
        score, order = score.sort(1, descending=True)
        score, order = score[:, :top], order[:, :top]
        b, k = score.shape
        src, tok = src.cpu().numpy().astype(np.int64), tok.cpu().numpy()  # (E, B, K)
        frames = ev_frame.cpu().numpy()
        cols = [x.gather(1, order).cpu().numpy() for x in (am, lm, words)]
        score, order = score.cpu().numpy(), order.cpu().numpy()
        slots = order.copy()  # walk back from the last step for every (utterance, rank)
        rows = np.arange(b)[:, None]
        emitted = np.empty((len(src), b, k), dtype=np.int64)
        for e in range(len(src) - 1, -1, -1):
            emitted[e] = tok[e][rows, slots]
            slots = src[e][rows, slots]
        out = []
        for i in range(b):
            hyps = []
            for r in range(k):
                if score[i, r] == NEG_INF:
                    break
                steps = np.flatnonzero(emitted[:, i, r] >= 0)
                hyps.append(
                    BatchHypothesis(
                        tokens=emitted[steps, i, r].tolist(),
                        frames=frames[i, steps].tolist(),
                        score=float(score[i, r]),
                        am_score=float(cols[0][i, r]),
                        lm_score=float(cols[1][i, r]),
                        num_words=int(cols[2][i, r]),
                    )
                )
            out.append(hyps)
        return out


def _col(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (like.dim() - 1)))


def _drop(flat: torch.Tensor, idx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``flat`` with the entries ``idx`` where ``mask`` set to -inf (merged into a beam); the
    others write a spare column (no host sync, unlike boolean indexing)."""
    spare = flat.new_full((flat.shape[0], 1), NEG_INF)
    out = torch.cat([flat, spare], 1)
    out.scatter_(1, torch.where(mask, idx, flat.shape[1]), NEG_INF)
    return out[:, :-1]
