"""Benchmark: CTC decoding on the GPU (Triton greedy, batched prefix beam search with an n-gram
LM) against the CPU decoders (pyctcdecode, flashlight) and torchaudio's ``cuda_ctc_decoder``.

Per vocabulary (V = 32 characters; V = 500 and 4096 sentencepiece-style word pieces): greedy
(bf16 and fp32 logits), beam 10 without LM and with a word 4-gram (exact, and with
``blank_skip=0.95``), the 1-best checked against the CPU search on a few utterances; then the
peers on the same log-probabilities. Prints real-time factors (audio s / wall s, a frame = 20 ms)
and WER against the simulated utterances' texts, issue 18's targets, and a table last.
Greedy runs at every V before any beam search, so a run cut short still has the bandwidth line;
the JSON (``--out``) is rewritten after each vocabulary's greedy and beam rows.

    python bench/gpu_decode.py --tiny                      # CPU smoke run (B=4, ~200 frames)
    python bench/gpu_decode.py --prepare bench/gpu_decode_data   # here: texts, tokens, 4-gram
    python bench/gpu_decode.py --data bench/gpu_decode_data --device cuda --out r.json
    bash bench/gpu_decode_device.sh                        # the GPU machine's one command

Data: sentences of the synthetic grammar, several per utterance (B=64, 1-2k frames), rendered
as peaky CTC emissions by ``decode_peer.simulate_ctc_emissions`` with letter / one-letter-piece
confusions; the LM is a word 4-gram (lmplz) of other sentences. ``--prepare`` stores texts,
labellings, tokens and the gzipped ARPA (the GPU machine has no lmplz) but not the emissions:
V=4096 fp32 logits are 1.6 GB against a 64 MiB carry, so every run regenerates them from
per-utterance seeds (in a fork pool; the same arrays wherever numpy is the same).
"""

from __future__ import annotations

import argparse
import collections
import functools
import gzip
import json
import logging
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch
from decode_peer import build_pyctcdecode, simulate_ctc_emissions

from speechssl.asr.batch_search import BatchPrefixSearch
from speechssl.asr.decode import CTCDecoder, DecoderConfig
from speechssl.asr.lm import BOUNDARY_WORDS, LN10, read_arpa_unigrams
from speechssl.kernels.ctc_greedy import ctc_greedy_batch

LETTERS = "abcdefghijklmnopqrstuvwxyz'"
CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
_FORK: tuple = ()  # what forked workers read (inherited, never pickled)
_cuctc_hung = False


# ---- data -------------------------------------------------------------------------------------


def make_tokens(vocab: int, counts: collections.Counter) -> list[str]:
    """V < 100: characters (blank, |, ', a-z) padded with ``<x..>``. Else word pieces: blank,
    <unk>, <sil> (flashlight's silence), ▁ + each letter and each letter alone (any word can
    be spelled), ▁ + whole word for 3/4 of the rest (frequent words first), then the 2-3 letter
    chunks of the other words, most frequent first, down to rare ones."""
    if vocab < 100:
        base = ["<blank>", "|", "'", *LETTERS[:-1]]
        return base + [f"<x{i}>" for i in range(vocab - len(base))]
    base = ["<blank>", "<unk>", "<sil>", *("▁" + c for c in LETTERS), *LETTERS]
    room = vocab - len(base)
    whole = ["▁" + w for w, _ in counts.most_common() if len(w) > 1][: room * 3 // 4]
    chunks: collections.Counter = collections.Counter()
    for w, c in counts.items():
        if "▁" + w not in whole:
            for n in (2, 3):
                chunks.update({"▁" + w[:n]: c} if len(w) > n else {})
                chunks.update({w[i : i + n]: c for i in range(1, len(w) - n + 1)})
    pieces = dict.fromkeys(base + whole)
    for p, _ in chunks.most_common():
        if len(pieces) == vocab:
            break
        pieces.setdefault(p)
    return list(pieces) + [f"<x{i}>" for i in range(vocab - len(pieces))]


def labelling(text: str, index: dict[str, int]) -> list[int]:
    """Characters with | between words, or each word's greedy longest-match pieces."""
    if "|" in index:
        return [index[c] for c in "|".join(text.split())]
    out = []
    for word in text.split():
        i = 0
        while i < len(word):
            mark = "▁" if i == 0 else ""
            j = next((j for j in range(len(word), i, -1) if mark + word[i:j] in index), i)
            out.append(index[mark + word[i:j]] if j > i else index["<unk>"])
            i = max(j, i + 1)
    return out


def confusions(tokens: list[str]) -> dict[int, list[int]]:
    """Characters: bench/decode.py's CONFUSABLE letters; pieces: pieces one letter away."""
    from decode import CONFUSABLE

    index = {t: i for i, t in enumerate(tokens)}
    if "|" in index:
        return {index[c]: [index[x] for x in alts] for c, alts in CONFUSABLE.items()}
    out = {}
    for i, p in enumerate(tokens):
        near = {p[:k] + c + p[k + 1 :] for k in range(p.startswith("▁"), len(p)) for c in LETTERS}
        near = [index[q] for q in sorted(near) if q in index and q != p]  # sorted: reproducible
        if near and not p.startswith("<"):
            out[i] = near
    return out


def prepare(args: argparse.Namespace, out: Path) -> None:
    """Texts, tokens, labellings, confusions (data.json) and the 4-gram (lm.arpa.gz) in ``out``."""
    from decode import grammar_sentences

    from speechssl.asr.lm import build_arpa

    out.mkdir(parents=True, exist_ok=True)
    lm_text = grammar_sentences(args.lm_sentences, args.seed)
    (out / "lm_text.txt").write_text("\n".join(lm_text) + "\n")
    arpa = build_arpa(out / "lm_text.txt", out / "lm.arpa", order=4, discount_fallback=True)
    with open(arpa, "rb") as f, gzip.open(out / "lm.arpa.gz", "wb") as g:
        shutil.copyfileobj(f, g)
    arpa.unlink()
    (out / "lm_text.txt").unlink()
    counts = collections.Counter(w for s in lm_text for w in s.split())
    targets = np.random.default_rng(args.seed + 2).uniform(2 / 3, 4 / 3, args.batch) * args.frames
    vocabs = []
    for vocab in args.vocabs:
        tokens = make_tokens(vocab, counts)
        index = {t: i for i, t in enumerate(tokens)}
        pool = iter(grammar_sentences(args.batch * 200, args.seed + 1))
        refs, labs = [], []
        for target in targets:  # ~2.5 frames a token (1-2 held, 0-2 blanks between)
            words, lab = [], []
            while len(lab) < target / 2.5:
                words += next(pool).split()
                lab = labelling(" ".join(words), index)
            refs.append(" ".join(words))
            labs.append(lab)
        conf = {str(k): v for k, v in confusions(tokens).items()}
        vocabs.append(dict(V=vocab, tokens=tokens, refs=refs, labellings=labs, confusions=conf))
    meta = dict(seed=args.seed, batch=args.batch, frames=args.frames, vocabs=vocabs)
    meta["lm_sentences"] = args.lm_sentences
    (out / "data.json").write_text(json.dumps(meta))


def _simulate(i: int) -> np.ndarray:
    labs, vocab, conf, seed = _FORK
    rng = np.random.default_rng([seed, vocab, i])  # per utterance: the same in any worker
    return simulate_ctc_emissions([labs[i]], vocab, rng, confusions=conf)[0]


@dataclass
class Batch:
    """One vocabulary's utterances: texts, (T_i, V) log-probabilities, and padded on the device."""

    tokens: list[str]
    refs: list[str]
    lps: list[np.ndarray]
    x: torch.Tensor  # (B, T, V) float32
    lengths: torch.Tensor
    seconds: list[float]

    @classmethod
    def load(cls, entry: dict, seed: int, frame_ms: float, device: torch.device) -> Batch:
        global _FORK
        conf = {int(k): v for k, v in entry["confusions"].items()}
        _FORK = (entry["labellings"], entry["V"], conf, seed)
        with mp.get_context("fork").Pool(min(CPUS, len(entry["labellings"]))) as pool:
            lps = pool.map(_simulate, range(len(entry["labellings"])), chunksize=1)
        x = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(a) for a in lps], batch_first=True)
        lengths = torch.tensor([len(a) for a in lps], device=device)
        seconds = [len(a) * frame_ms / 1e3 for a in lps]
        return cls(entry["tokens"], entry["refs"], lps, x.to(device), lengths, seconds)

    def row(self, decoder, setting, texts, wall, note="", n=None, **extra) -> dict:
        """A table row: RTF over the first ``n`` utterances' audio, WER of their ``texts``."""
        n = n or len(self.refs)
        audio = sum(self.seconds[:n])
        return dict(V=len(self.tokens), decoder=decoder, setting=setting, utts=n, audio_s=audio,
                    wall_s=wall, rtf=audio / wall if wall else None, note=note,
                    wer=None if texts is None else wer(self.refs[:n], texts), **extra)  # fmt: skip


# ---- scoring and timing helpers -----------------------------------------------------------------


def wer(refs: list[str], hyps: list[str]) -> float:
    """Corpus WER: jiwer's if importable, else word edit distance (row DP in numpy)."""
    hyps = [" ".join(h.split()) for h in hyps]
    try:
        import jiwer

        return float(jiwer.wer(list(refs), hyps))
    except ImportError:
        pass
    errors = 0
    for ref, hyp in zip(refs, hyps):
        h = np.array(hyp.split() or [""], dtype=object)
        cols = np.arange(len(h) + 1)
        row = cols.copy()
        for i, word in enumerate(ref.split(), 1):
            step = np.minimum(row[1:] + 1, row[:-1] + (h != word))  # deletion, substitution
            row = np.minimum.accumulate(np.r_[i, step] - cols) + cols  # insertions
        errors += row[-1] if hyp else len(ref.split())
    return errors / max(1, sum(len(r.split()) for r in refs))


def text(decoder: CTCDecoder, tokens) -> str:
    return " ".join(w for w, _, _ in decoder._word_positions(list(tokens)))


def timed(fn, runs: int, device: torch.device) -> float:
    """Median seconds of ``runs`` calls after a warm-up: CUDA events on a GPU."""
    fn()
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def kernel_seconds(fn, runs: int) -> tuple[float | None, float | None]:
    """(median device time of the greedy kernel, mean device time of all kernels and copies
    per call) from the CUDA profiler: the call syncs on its host copy, so events around it
    would count the host side too."""
    try:
        from torch.autograd import DeviceType
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(runs):
                fn()
        events = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
        kernel = [e.time_range.elapsed_us() for e in events if "_argmax_kernel" in e.name]
        total = sum(e.time_range.elapsed_us() for e in events) / runs
        return (float(np.median(kernel)) / 1e6 if kernel else None), total / 1e6
    except Exception as err:  # noqa: BLE001 - a profiler problem costs only these columns
        print(f"  note: CUDA profiler failed ({err!r}); kernel times n/a")
        return None, None


# ---- the decoders ------------------------------------------------------------------------------


def bench_greedy(b: Batch, dtype, args, device) -> dict:
    """The Triton kernel's device time against the bandwidth floor (the valid frames' logits
    read once), and the whole call with its host copy."""
    logits, decoder = b.x.to(dtype), CTCDecoder(b.tokens)
    call = lambda: ctc_greedy_batch(logits, b.lengths)  # noqa: E731
    texts = [text(decoder, ids) for ids in call()]
    e2e = timed(call, args.repeats, device)
    extra = dict(e2e_s=e2e, bytes=int(b.lengths.sum()) * len(b.tokens) * logits.element_size())
    extra["floor_s"] = extra["bytes"] / args.bandwidth
    note = f"e2e incl. host copy {e2e * 1e3:.2f} ms ({sum(b.seconds) / e2e:.3g}x)"
    kernel = None
    if device.type == "cuda":
        kernel, extra["device_total_s"] = kernel_seconds(call, args.repeats)
        extra["torch_argmax_s"] = timed(lambda: logits.argmax(-1), args.repeats, device)
        if kernel:
            extra["floor_ratio"] = kernel / extra["floor_s"]
            note = (f"kernel {kernel * 1e6:.0f} us = {extra['floor_ratio']:.2f}x the floor "
                    f"{extra['floor_s'] * 1e6:.0f} us; torch argmax "
                    f"{extra['torch_argmax_s'] * 1e6:.0f} us; {note}")  # fmt: skip
    name = str(dtype).removeprefix("torch.") + (", kernel" if kernel else ", e2e")
    return b.row("ctc_greedy_batch", name, texts, kernel or e2e, note, **extra)


def bench_greedy_spans(b: Batch, args, device) -> dict:
    """``CTCDecoder.greedy_batch`` (what ``transcribe --device cuda`` runs: the kernel, then
    each token's frames and peak on the device) against ``CTCDecoder.greedy`` per utterance on
    the CPU: the same texts, tokens and word frames, and the time of each."""
    decoder = CTCDecoder(b.tokens)
    call = lambda: decoder.greedy_batch(b.x, b.lengths)  # noqa: E731
    got = call()
    t0 = time.perf_counter()
    want = [decoder.greedy(lp) for lp in b.lps]
    cpu = time.perf_counter() - t0

    def key(h):
        return h.tokens, [(w.word, w.start_frame, w.end_frame) for w in h.words]

    differ = sum(key(g) != key(w) for g, w in zip(got, want, strict=True))
    am_gap = max(abs(g.am_score - w.am_score) for g, w in zip(got, want))
    e2e = timed(call, args.repeats, device)
    note = (f"{differ} of {len(want)} utterances differ from CTCDecoder.greedy (max am gap "
            f"{am_gap:.1e}); CPU greedy {cpu * 1e3:.0f} ms = {cpu / e2e:.3g}x this")  # fmt: skip
    print(f"  greedy_batch: {note}")
    return [b.row("CTCDecoder.greedy_batch", "fp32, e2e, spans", [h.text for h in got], e2e,
                  note, differ=differ, am_gap=am_gap, cpu_greedy_s=cpu)]  # fmt: skip


def bench_beam(b: Batch, decoder, setting, args, device, compiled: bool = False) -> list[dict]:
    """Exact and blank skipping (CUDA-graph steps on a GPU), or with ``compiled`` the exact
    search with the torch.compile'd step."""
    rows = []
    variants = [(1.0, True)] if compiled else [(1.0, False), (0.95, False)]
    for skip, step_compiled in variants:
        search = BatchPrefixSearch(decoder, device, blank_skip=skip, compile=step_compiled)
        t0 = time.perf_counter()  # warm-up at the batch's shape (a compiled step is per shape)
        search(b.x[:, :200], b.lengths.clamp(max=200), top=1)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()  # the search ends in host copies: no sync needed around it
        hyps = search(b.x, b.lengths, top=1)
        wall = time.perf_counter() - t0
        texts = [text(decoder, h[0].tokens) if h else "" for h in hyps]
        note = "frames with P(blank) >= 0.95 skipped (inexact)"
        if step_compiled:
            note = f"torch.compile'd step; compile + warm-up {warm:.0f} s"
        elif skip == 1.0:  # the CPU reference search on the first few utterances
            n = min(args.check_utts, len(b.lps))
            same = sum(decoder.beam_search(b.lps[i])[0].tokens == hyps[i][0].tokens
                       for i in range(n))  # fmt: skip
            note = f"1-best = CPU CTCDecoder.beam_search on {same}/{n}"
        label = (
            setting
            + ("" if skip == 1.0 else ", skip 0.95")
            + (", compiled" if step_compiled else "")
        )
        rows.append(b.row("BatchPrefixSearch", label, texts, wall, note))
    return rows


def _peer(i: int) -> str:
    fn, lps = _FORK
    return fn(lps[i])


def bench_pyctcdecode(b: Batch, lm, cfg, setting, n) -> list[dict]:
    """pyctcdecode ``decode_beams`` (its end-of-utterance empty-word scoring fixed, as
    ``build_pyctcdecode`` does by default: then it maximises the same objective as ours): one
    process on ``n`` utterances, then a fork pool of all cores on all (forked after the LM
    load, so the workers share it)."""
    global _FORK
    peer = build_pyctcdecode(b.tokens, lm, cfg)
    kw = dict(beam_width=cfg.beam, beam_prune_logp=cfg.beam_prune_logp,
              token_min_logp=cfg.token_min_logp)  # fmt: skip
    _FORK = (lambda x: peer.decode_beams(x, **kw)[0][0], b.lps)
    _peer(0)  # warm-up: LM caches, first-use costs
    t0 = time.perf_counter()
    texts = [_peer(i) for i in range(n)]
    note = f"timed on {n} of {len(b.lps)} utts" if n < len(b.lps) else ""
    rows = [b.row("pyctcdecode, 1 process", setting, texts, time.perf_counter() - t0, note, n)]
    with mp.get_context("fork").Pool(CPUS) as pool:
        pool.map(_peer, range(CPUS))
        t0 = time.perf_counter()
        texts = pool.map(_peer, range(len(b.lps)), chunksize=1)
        rows.append(b.row(f"pyctcdecode, Pool({CPUS}) fork", setting, texts,
                          time.perf_counter() - t0))  # fmt: skip
    return rows


@functools.cache
def _flashlight():
    try:
        from torchaudio.models.decoder import ctc_decoder

        return ctc_decoder
    except (ImportError, RuntimeError) as err:  # torchaudio raises RuntimeError
        print(f"  note: flashlight skipped: flashlight-text does not import ({err})")
        return None


def bench_flashlight(b: Batch, lm, cfg, setting, n, decoder, work) -> list[dict]:
    """torchaudio's ``ctc_decoder``: with the LM a lexicon of the LM's words (closed
    vocabulary: OOV words cannot come out), lexicon-free without. Its KenLM scores are log10
    (ours natural logs): lm_weight = alpha * ln 10. Token beam 32 a frame (ours and
    pyctcdecode keep the tokens above token_min_logp)."""
    if _flashlight() is None:
        return []
    tokens, lexicon, index = b.tokens, None, {t: i for i, t in enumerate(b.tokens)}
    if lm is not None:
        lexicon = Path(work) / f"lexicon{len(tokens)}.txt"
        with open(lexicon, "w") as f:
            for w in sorted(read_arpa_unigrams(lm) - BOUNDARY_WORDS):
                ids = labelling(w, index) + ([index["|"]] if "|" in index else [])
                f.write(f"{w} {' '.join(tokens[i] for i in ids)}\n")
    fl = _flashlight()(
        str(lexicon) if lexicon else None, tokens, lm=str(lm) if lm else None,
        beam_size=cfg.beam, beam_size_token=min(32, len(tokens)),
        beam_threshold=-cfg.beam_prune_logp, lm_weight=cfg.alpha * LN10, word_score=cfg.beta,
        blank_token=tokens[0], sil_token="|" if "|" in index else "<sil>",
    )  # fmt: skip

    def one(x):
        hyp = fl(torch.from_numpy(x)[None])[0][0]
        return " ".join(hyp.words) if lexicon else text(decoder, hyp.tokens.tolist())

    one(b.lps[0])
    t0 = time.perf_counter()
    texts = [one(x) for x in b.lps[:n]]
    note = ("lexicon + LM" if lexicon else "lexicon-free") + (
        f", timed on {n} of {len(b.lps)} utts" if n < len(b.lps) else "")  # fmt: skip
    return [b.row("flashlight ctc_decoder, 1 thread", setting, texts,
                  time.perf_counter() - t0, note, n)]  # fmt: skip


def cuctc_child(path: str) -> None:
    """The subprocess of :func:`bench_cuctc`: decode, print one JSON line (if it lives)."""
    from torchaudio.models.decoder import cuda_ctc_decoder

    job = torch.load(path, weights_only=True)
    dec = cuda_ctc_decoder(job["tokens"], beam_size=job["beam"], blank_skip_threshold=0.95)
    x, n = job["x"].cuda(), job["lengths"].cuda().int()
    dec(x[:1], n[:1])
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = dec(x, n)
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    print(json.dumps(dict(wall=wall, tokens=[list(map(int, h[0].tokens)) for h in out])))


def bench_cuctc(b: Batch, cfg, decoder, work) -> list[dict]:
    """In a subprocess: on an H100 it dies with cudaErrorIllegalAddress (torchaudio #3754).
    One that hangs instead is not tried again at the larger vocabularies (the time budget)."""
    global _cuctc_hung
    name, setting = "torchaudio cuda_ctc_decoder", f"beam {cfg.beam}, no LM, skip 0.95"
    if _cuctc_hung:
        return [b.row(name, setting, None, None, "not run: it hung at a smaller V")]
    path = Path(work) / "cuctc.pt"
    torch.save(dict(x=b.x.cpu(), lengths=b.lengths.cpu(), tokens=b.tokens, beam=cfg.beam), path)
    try:
        done = subprocess.run([sys.executable, __file__, "--cuctc-child", str(path)],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        # the error, not what __del__ of the half-built decoder prints after it
        err = done.stderr.split("Exception ignored in")[0].strip().splitlines()
        why = None if done.returncode == 0 else (err or [f"exit status {done.returncode}"])[-1]
    except subprocess.TimeoutExpired:
        why, _cuctc_hung = "hung: killed after 60 s", True
    path.unlink()
    if why is not None:
        print(f"  cuda_ctc_decoder: crashed: {why}")
        return [b.row(name, setting, None, None, f"crashed: {why[:90]}")]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    return [b.row(name, setting, [text(decoder, t) for t in got["tokens"]], got["wall"])]


def guarded(bench, *args) -> list[dict]:
    """A peer that fails costs its rows, not the run (printed)."""
    try:
        return bench(*args)
    except Exception as err:  # noqa: BLE001
        print(f"  note: {bench.__name__} failed: {err!r}")
        return []


# ---- the run -----------------------------------------------------------------------------------


def load_vocab(entry, meta, args, device) -> Batch:
    t0 = time.perf_counter()
    b = Batch.load(entry, meta["seed"], args.frame_ms, device)
    print(f"\nV = {len(b.tokens)}: {len(b.lps)} utterances, {int(b.lengths.sum())} frames "
          f"({b.lengths.min()}-{b.lengths.max()}), {sum(b.seconds):.0f} s of audio; emissions "
          f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
    return b


def greedy_rows(b: Batch, args, device) -> list[dict]:
    rows = [bench_greedy(b, dtype, args, device) for dtype in (torch.bfloat16, torch.float32)]
    return rows + guarded(bench_greedy_spans, b, args, device)


def _decoders(b: Batch, lm_path, args):
    """(setting, LM path, decoder) without an LM and with the 4-gram."""
    for lm in (None, lm_path):
        # no LM: no word bonus either (pyctcdecode has none without an LM)
        cfg = DecoderConfig(beam=args.beam, alpha=args.alpha, beta=args.beta if lm else 0.0,
                            beam_prune_logp=args.beam_prune_logp,
                            token_min_logp=args.token_min_logp)  # fmt: skip
        yield (
            f"beam {cfg.beam}, " + ("4-gram" if lm else "no LM"),
            lm,
            CTCDecoder(b.tokens, lm, cfg),
        )


def beam_rows(b: Batch, lm_path, args, device, work) -> list[dict]:
    print(f"\nV = {len(b.tokens)}: beam search")
    rows = []
    for setting, lm, decoder in _decoders(b, lm_path, args):
        rows += bench_beam(b, decoder, setting, args, device)
        print(f"  {setting}: batched search done")
        n = min(args.peer_utts or len(b.lps), len(b.lps))
        cfg = decoder.config
        rows += guarded(bench_pyctcdecode, b, lm, cfg, setting, n)
        rows += guarded(bench_flashlight, b, lm, cfg, setting, n, decoder, work)
        if lm is None and device.type == "cuda":
            rows += guarded(bench_cuctc, b, cfg, decoder, work)
    return rows


def compiled_rows(b: Batch, lm_path, with_lm: bool, args, device, deadline: float) -> list[dict]:
    """The torch.compile'd step (tens of seconds to compile a shape), only while
    ``--compile-reserve-s`` is left before the deadline."""
    rows = []
    for setting, lm, decoder in _decoders(b, lm_path, args):
        if (lm is not None) != with_lm:
            continue
        left = deadline - time.monotonic()
        if left < args.compile_reserve_s:
            print(f"  V = {len(b.tokens)}, {setting}, compiled: skipped, {left:.0f} s left")
            continue
        rows += guarded(bench_beam, b, decoder, setting, args, device, True)
        print(f"  V = {len(b.tokens)}, {setting}: compiled step done")
    return rows


def acceptance(rows: list[dict]) -> list[str]:
    """Issue 18's targets against this run's numbers."""
    out = []

    def check(ok: bool, what: str) -> None:
        out.append(f"  {'ok  ' if ok else 'MISS'} {what}")

    for r in rows:
        v, rtf = r["V"], r["rtf"] or 0.0
        if r["decoder"] == "ctc_greedy_batch" and v >= 1024 and "floor_ratio" in r:
            check(r["floor_ratio"] <= 2, f"greedy, V={v}, {r['setting']}: kernel "
                  f"{r['floor_ratio']:.2f}x the bandwidth floor (target <= 2x)")  # fmt: skip
        if r["decoder"] == "CTCDecoder.greedy_batch":
            check(r["differ"] == 0, f"greedy_batch, V={v}: {r['differ']} utterances differ "
                  f"from CTCDecoder.greedy (target 0)")  # fmt: skip
        if r["decoder"] != "BatchPrefixSearch" or "skip" in r["setting"]:
            continue
        setting, variant = r["setting"].removesuffix(", compiled"), r["setting"]
        if setting.endswith("no LM") and v in (32, 500):
            check(rtf >= 20000, f"{variant}, V={v}: {rtf:.3g}x real time (target >= 20000x)")
        if setting.endswith("4-gram"):
            peer = [p["wer"] for p in rows if p["V"] == v and p["setting"] == setting
                    and p["decoder"].startswith("pyctcdecode, Pool")]  # fmt: skip
            gap = 100 * (r["wer"] - peer[0]) if peer else float("nan")
            check(rtf >= 5000 and gap <= 0.1, f"{variant}, V={v}: {rtf:.3g}x real time "
                  f"(target >= 5000x); WER {100 * r['wer']:.2f}%, {gap:+.2f} points from "
                  f"pyctcdecode + KenLM (target: at most +0.1)")  # fmt: skip
    return out


def machine(device: torch.device) -> str:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none (device cpu)"
    pkgs = []
    for name in ("triton", "pyctcdecode", "kenlm", "flashlight-text", "jiwer"):
        try:
            pkgs.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pkgs.append(f"{name} absent")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"machine: GPU {gpu}; {os.cpu_count()} CPUs ({CPUS} usable), load average {load}; "
            f"python {platform.python_version()}, torch {torch.__version__}, {', '.join(pkgs)}")  # fmt: skip


def print_table(rows: list[dict]) -> None:
    print(f"\n{'V':>5s} {'decoder':32s} {'setting':26s} {'utts':>4s} {'wall s':>9s} "
          f"{'RTFx':>9s} {'WER':>7s}  note")  # fmt: skip
    for r in rows:
        wall = "-" if r["wall_s"] is None else f"{r['wall_s']:.3g}"
        rtf = "-" if r["rtf"] is None else f"{r['rtf']:.3g}"
        w = "-" if r["wer"] is None else f"{100 * r['wer']:.2f}%"
        print(f"{r['V']:5d} {r['decoder']:32s} {r['setting']:26s} {r['utts']:4d} {wall:>9s} "
              f"{rtf:>9s} {w:>7s}  {r['note']}")  # fmt: skip


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="B=4, ~200 frames, V 32/500, beam 4")
    p.add_argument("--prepare", metavar="DIR", help="build the data into DIR and stop")
    p.add_argument("--data", metavar="DIR", help="read what --prepare built (B, frames, V, LM)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", help="write all numbers as JSON here (rewritten as rows come)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--frames", type=int, default=1500, help="mean frames an utterance")
    p.add_argument("--vocabs", type=int, nargs="+", default=[32, 500, 4096])
    p.add_argument("--lm-sentences", type=int, default=20000)
    p.add_argument("--beam", type=int, default=10)
    p.add_argument(
        "--compile-vocabs",
        type=int,
        nargs="*",
        help="V whose beam runs also time the torch.compile'd step, run last (default 32 500; "
        "none with --tiny)",
    )
    p.add_argument(
        "--time-budget-s",
        type=float,
        help="seconds this run may take (compiled steps are skipped near the end)",
    )
    p.add_argument("--compile-reserve-s", type=float, default=75.0,
                   help="a compiled variant starts only with this much of the budget left")  # fmt: skip
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--beam-prune-logp", type=float, default=-10.0)
    p.add_argument("--token-min-logp", type=float, default=-5.0)
    p.add_argument("--frame-ms", type=float, default=20.0)
    p.add_argument("--repeats", type=int, default=20, help="timed greedy runs (median)")
    p.add_argument("--peer-utts", type=int, default=16, help="CPU peers' 1-process utts (0: all)")
    p.add_argument("--check-utts", type=int, default=8, help="utts checked vs the CPU search")
    p.add_argument("--bandwidth", type=float, default=3.1e12, help="B/s (H100 measured read)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cuctc-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.compile_vocabs is None:
        args.compile_vocabs = [] if args.tiny else [32, 500]
    if args.tiny:
        args.batch, args.frames, args.vocabs, args.lm_sentences = 4, 200, [32, 500], 2000
        args.beam, args.repeats, args.peer_utts, args.check_utts = 4, 3, 0, 4
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cuctc_child:
        cuctc_child(args.cuctc_child)
        return 0
    t_start = time.monotonic()
    device = torch.device(args.device)
    logging.getLogger("pyctcdecode").setLevel(logging.ERROR)
    print(machine(device))
    if device.type == "cpu":
        print("device: cpu: greedy and the batched search run on the CPU (built for the GPU)")
    with tempfile.TemporaryDirectory() as work:
        data = Path(args.data or args.prepare or work)
        if not args.data:
            t0 = time.perf_counter()
            prepare(args, data)
            print(f"data: built in {time.perf_counter() - t0:.1f} s into {data}")
            if args.prepare:
                return 0
        meta = json.loads((data / "data.json").read_text())
        lm = Path(work) / "lm.arpa"
        with gzip.open(data / "lm.arpa.gz", "rb") as f, open(lm, "wb") as g:
            shutil.copyfileobj(f, g)
        print(f"data: B = {meta['batch']}, ~{meta['frames']} frames, V in "
              f"{[v['V'] for v in meta['vocabs']]}; 4-gram of {meta['lm_sentences']} sentences "
              f"({lm.stat().st_size / 1e6:.1f} MB ARPA); beam {args.beam}, alpha {args.alpha}, "
              f"beta {args.beta}, prune {args.beam_prune_logp}, token_min {args.token_min_logp}")  # fmt: skip
        results = dict(machine=machine(device), args=vars(args), rows=[])

        def save(rows: list[dict]) -> None:
            results["rows"] += rows
            if args.out:
                Path(args.out).write_text(json.dumps(results, indent=1))

        # greedy at every V first (seconds): a run cut short still has the bandwidth line
        batches = [load_vocab(entry, meta, args, device) for entry in meta["vocabs"]]
        for b in batches:
            save(greedy_rows(b, args, device))
        for b in batches:
            save(beam_rows(b, lm, args, device, work))
        deadline = t_start + (args.time_budget_s or float("inf"))
        for with_lm in (False, True):  # last: what a short budget can do without
            for b in (b for b in batches if len(b.tokens) in args.compile_vocabs):
                save(compiled_rows(b, lm, with_lm, args, device, deadline))
    results["acceptance"] = acceptance(results["rows"])
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    where = "" if device.type == "cuda" else " (device cpu: the targets are the GPU's)"
    print("\nacceptance" + where + ":\n" + "\n".join(results["acceptance"]))
    print_table(results["rows"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
