"""``speechssl transcribe``: audio files, folders or a Kaldi ``wav.scp`` -> text or JSON lines
with word timestamps, through a CTC model and :class:`~speechssl.asr.decode.CTCDecoder`.

Any sample rate and channel count is read (soundfile), mixed down to mono and resampled to
16 kHz. Long audio is cut into windows (``window`` seconds overlapping by ``overlap``) or, with
``--vad``, into speech regions found by an energy detector (regions longer than a window are
windowed too). Neighbouring windows are stitched at the middle of their overlap: a word belongs
to the window whose share of the overlap holds the word's midpoint, so no word is written twice.
Windows of several files are batched for the forward pass (sorted by length); files are read in
chunks of ``chunk_seconds`` of audio so memory stays bounded on a large folder.

With ``nbest > 1`` the n-best list of a file is the k best combinations of its windows' n-best
lists (window scores add up; each alternative is trimmed to the window's share like the best).

A file that cannot be read (missing, empty, corrupt) gives one ``error: <path>: <reason>`` line
on stderr; the other files are still transcribed and the exit status is 1.
"""

from __future__ import annotations

import heapq
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from speechssl.asr.decode import CTCDecoder, Hypothesis, frames_to_seconds
from speechssl.data.audio import SAMPLE_RATE, AudioError, load_audio
from speechssl.data.kaldi import DataDir, DataDirError, read_table

# Extensions taken from a folder (formats libsndfile reads); other files there are ignored.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au")
# Shorter windows are zero-padded to one 25 ms analysis frame so every model yields a frame.
MIN_WINDOW_SAMPLES = 400


@dataclass
class AudioInput:
    """One thing to transcribe: ``source`` (a path, or a ``cmd |`` pipe from a wav.scp), and a
    segment ``start``/``end`` in seconds (Kaldi ``segments``; ``end=None``: to the end)."""

    id: str
    source: str
    start: float = 0.0
    end: float | None = None


@dataclass
class WordTiming:
    word: str
    start: float  # seconds in the file
    end: float
    confidence: float  # 0..1, from the decoder's per-token posteriors


@dataclass
class NBestEntry:
    text: str
    score: float
    am_score: float
    lm_score: float


@dataclass
class TranscriptResult:
    id: str
    path: str
    duration: float  # seconds
    text: str
    words: list[WordTiming]
    nbest: list[NBestEntry] = field(default_factory=list)  # best first; the best is `text`

    def to_json(self, with_nbest: bool) -> dict:
        out = {
            "id": self.id,
            "path": self.path,
            "duration": round(self.duration, 3),
            "text": self.text,
            "words": [
                {
                    "word": w.word,
                    "start": round(w.start, 3),
                    "end": round(w.end, 3),
                    "confidence": round(w.confidence, 4),
                }
                for w in self.words
            ],
        }
        if with_nbest:
            out["nbest"] = [
                {"text": e.text, "score": e.score, "am_score": e.am_score, "lm_score": e.lm_score}
                for e in self.nbest
            ]
        return out


@dataclass
class TranscribeError:
    """An input that could not be transcribed; ``reason`` starts with the path."""

    id: str
    path: str
    reason: str


# ---------------------------------------------------------------------------------------------
# inputs


def collect_inputs(
    args: Iterable[str | os.PathLike | AudioInput],
) -> list[AudioInput | TranscribeError]:
    """Expand command-line inputs: an audio file; a folder (its audio files, sorted, recursive;
    a Kaldi data dir, i.e. a folder with ``wav.scp``, gives its utterances incl. ``segments``);
    a ``*.scp`` file (ids from it, relative paths resolved against its folder). Ids are unique:
    a repeated one gets ``-2``, ``-3`` ... appended. :class:`AudioInput` s pass through."""
    items: list[AudioInput | TranscribeError] = []
    for arg in args:
        if isinstance(arg, AudioInput):
            items.append(arg)
            continue
        try:
            items += _expand(str(arg))
        except DataDirError as e:  # a malformed wav.scp / data dir: the other inputs still run
            items.append(TranscribeError(Path(arg).stem, str(arg), str(e)))
    seen: dict[str, int] = {}
    for item in items:
        n = seen[item.id] = seen.get(item.id, 0) + 1
        if n > 1:
            item.id = f"{item.id}-{n}"
    return items


def _expand(arg: str) -> list[AudioInput | TranscribeError]:
    path = Path(arg)
    if path.is_dir() and (path / "wav.scp").is_file():
        data = DataDir.load(path)
        return [_utterance(data, utt) for utt in data.utt_ids]
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
        )
        return [AudioInput(_file_id(p.relative_to(path)), str(p)) for p in files]
    if path.is_file() and path.suffix == ".scp":
        table = read_table(path, allow_empty_value=False)
        data = DataDir(path=path.parent, wav_scp=table, utt2spk={k: k for k in table})
        return [_utterance(data, rec) for rec in table]
    if path.is_file():
        return [AudioInput(_file_id(Path(path.name)), arg)]
    return [TranscribeError(path.stem, arg, f"{arg}: no such file or folder")]


def _file_id(relative: Path) -> str:
    """``sub/a b.flac`` -> ``sub/a_b``: Kaldi ids have no white space."""
    return "_".join(relative.with_suffix("").as_posix().split())


def _utterance(data: DataDir, utt: str) -> AudioInput:
    entry, start, end = data.audio_source(utt)
    return AudioInput(utt, data.resolve(entry), start, end)


# ---------------------------------------------------------------------------------------------
# windows and voice activity


@dataclass(frozen=True)
class VADConfig:
    """Energy voice activity detection (frame energies against the file's own level)."""

    frame: float = 0.025  # seconds per analysis frame
    hop: float = 0.010
    threshold_db: float = 35.0  # speech: frame energy within this many dB of the file's level
    level_percentile: float = 95.0  # the file's level: this percentile of frame energies
    floor_db: float = -70.0  # frames quieter than this (dBFS) are never speech
    min_silence: float = 0.3  # shorter pauses do not split a segment
    min_speech: float = 0.1  # shorter bursts (clicks) are dropped
    padding: float = 0.1  # seconds kept on each side of a segment


def energy_vad(
    wav: np.ndarray, cfg: VADConfig = VADConfig(), sample_rate: int = SAMPLE_RATE
) -> list[tuple[float, float]]:
    """Speech segments ``[(start_s, end_s)]`` of ``wav`` (num_samples,), sorted, disjoint.

    torchaudio's ``vad`` only trims leading silence and speechbrain's needs a trained model, so
    this is the classic frame-energy detector with hangover (``min_silence``) and padding."""
    frame, hop = int(cfg.frame * sample_rate), int(cfg.hop * sample_rate)
    duration = len(wav) / sample_rate
    if len(wav) < frame:
        wav = np.pad(wav, (0, frame - len(wav)))
    frames = np.lib.stride_tricks.sliding_window_view(wav, frame)[::hop]
    energy_db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    level = np.percentile(energy_db, cfg.level_percentile)
    speech = (energy_db > level - cfg.threshold_db) & (energy_db > cfg.floor_db)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], speech.astype(np.int8), [0]])))
    runs = [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2], strict=True)]
    merged: list[list[int]] = []
    for run in runs:
        if merged and (run[0] - merged[-1][1]) * cfg.hop < cfg.min_silence:
            merged[-1][1] = run[1]
        else:
            merged.append(run)
    segments = []
    for a, b in merged:
        start, end = a * cfg.hop, (b - 1) * cfg.hop + cfg.frame
        if end - start < cfg.min_speech:
            continue
        start, end = max(0.0, start - cfg.padding), min(duration, end + cfg.padding)
        if segments and start <= segments[-1][1]:
            segments[-1] = (segments[-1][0], end)
        else:
            segments.append((start, end))
    return segments


def split_windows(
    start: float, end: float, window: float, overlap: float
) -> list[tuple[float, float]]:
    """Windows of ``window`` seconds covering [start, end], each overlapping the next by
    ``overlap``; the last one is longer than ``overlap`` (no sliver windows)."""
    if window <= overlap:
        raise ValueError(f"window ({window} s) must be longer than its overlap ({overlap} s)")
    starts = [start]
    while starts[-1] + window < end:
        starts.append(starts[-1] + window - overlap)
    return [(s, min(s + window, end)) for s in starts]


# ---------------------------------------------------------------------------------------------
# stitching window hypotheses


@dataclass
class _Piece:
    """A (partial) transcript: the words a window owns and the scores of its hypothesis."""

    words: list[WordTiming]
    score: float = 0.0
    am_score: float = 0.0
    lm_score: float = 0.0

    @property
    def text(self) -> str:
        return " ".join(w.word for w in self.words)


def _concat(pieces: Sequence[_Piece]) -> _Piece:
    return _Piece(
        [w for p in pieces for w in p.words],
        float(sum(p.score for p in pieces)),
        float(sum(p.am_score for p in pieces)),
        float(sum(p.lm_score for p in pieces)),
    )


def _owned_words(
    hyp: Hypothesis, offset: float, share: tuple[float, float], stride: int
) -> list[WordTiming]:
    """The words of a window's hypothesis, in file seconds, whose midpoint lies in ``share``."""
    words = []
    for w in hyp.words:
        start = offset + frames_to_seconds(w.start_frame, stride, SAMPLE_RATE)
        end = offset + frames_to_seconds(w.end_frame, stride, SAMPLE_RATE)
        if share[0] <= (start + end) / 2 < share[1]:
            words.append(WordTiming(w.word, start, end, float(w.confidence)))
    return words


def _shares(windows: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Each window's share of its region: cut at the middle of every overlap."""
    cuts = [(windows[i][1] + windows[i + 1][0]) / 2 for i in range(len(windows) - 1)]
    return list(zip([-math.inf, *cuts], [*cuts, math.inf], strict=True))


def _best_combinations(per_window: list[list[_Piece]], k: int) -> list[_Piece]:
    """The ``k`` best concatenations of one piece per window (scores add up), best first.
    A window's pieces with the same text (hypotheses that differ only outside its share) count
    once. Paths of piece indices are kept, so a long file costs O(windows * k^2)."""
    distinct = []
    for pieces in per_window:
        by_text: dict[str, _Piece] = {}
        for piece in sorted(pieces, key=lambda p: -p.score):
            by_text.setdefault(piece.text, piece)
        distinct.append(list(by_text.values()))
    paths: list[tuple[float, tuple[int, ...]]] = [(0.0, ())]
    for pieces in distinct:
        extended = ((s + p.score, path + (j,)) for s, path in paths for j, p in enumerate(pieces))
        paths = heapq.nlargest(k, extended, key=lambda x: x[0])
    return [_concat([distinct[w][j] for w, j in enumerate(path)]) for _, path in paths]


def _monotonic(words: list[WordTiming], duration: float) -> list[WordTiming]:
    """Clamp to [0, duration] and make start/end times non-decreasing without overlaps (words
    of neighbouring windows can overlap by a frame or two)."""
    for i, w in enumerate(words):
        w.start = min(max(w.start, words[i - 1].start if i else 0.0), duration)
        w.end = min(max(w.end, w.start), duration)
        if i and words[i - 1].end > w.start:
            words[i - 1].end = w.start
    return words


# ---------------------------------------------------------------------------------------------
# the forward pass and decoding


@dataclass
class _Window:
    item: int  # index into the chunk's loaded files
    start: float  # seconds in the file
    end: float


def _batches(lengths: list[int], batch_seconds: float) -> Iterator[list[int]]:
    """Indices grouped longest first, at most ``batch_seconds`` of padded audio per group."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    i = 0
    while i < len(order):
        size = max(1, int(batch_seconds * SAMPLE_RATE // lengths[order[i]]))
        yield order[i : i + size]
        i += size


@torch.inference_mode()
def _window_hypotheses(
    model, decoder: CTCDecoder, wavs: list[np.ndarray], windows: list[_Window], opts
) -> list[list[Hypothesis]]:
    """The n-best hypotheses of every window (empty for a window with no output frame). Each
    batch is decoded as soon as it is computed, so only one batch's log-probabilities are held."""
    device = next(model.parameters()).device
    pieces = []
    for w in windows:
        piece = wavs[w.item][round(w.start * SAMPLE_RATE) : round(w.end * SAMPLE_RATE)]
        if len(piece) < MIN_WINDOW_SAMPLES:
            piece = np.pad(piece, (0, MIN_WINDOW_SAMPLES - len(piece)))
        pieces.append(piece)
    out: list[list[Hypothesis]] = [[] for _ in windows]
    for batch in _batches([len(p) for p in pieces], opts.batch_seconds):
        lengths = torch.tensor([len(pieces[j]) for j in batch])
        padded = torch.zeros(len(batch), int(lengths.max()))
        for row, j in enumerate(batch):
            padded[row, : len(pieces[j])] = torch.from_numpy(pieces[j])
        logp, frames = model.logprobs(padded.to(device), lengths.to(device))
        keep = [row for row, n in enumerate(frames.cpu().tolist()) if n > 0]
        hyps = _decode_rows(decoder, logp, frames, keep, opts)
        for row, h in zip(keep, hyps, strict=True):
            out[batch[row]] = h
    return out


def _decode_rows(decoder: CTCDecoder, logp: torch.Tensor, frames: torch.Tensor, keep, opts):
    """The n-best lists of rows ``keep`` of a batch's (B, T, V) log-probabilities, decoded
    where they lie: on a GPU by the Triton greedy kernel or the batched beam search (the
    scores are not copied to the host), else by the CPU decoder."""
    on_gpu = logp.device.type == "cuda"
    if opts.mode == "greedy" and on_gpu:
        found = decoder.greedy_batch(logp, frames)
        return [[found[row]] for row in keep]
    scores, counts = (logp if on_gpu else logp.float().cpu().numpy()), frames.tolist()
    utts = [scores[row, : counts[row]] for row in keep]
    if opts.mode == "greedy":
        return [[decoder.greedy(lp)] for lp in utts]
    if not utts:
        return []
    return decoder.decode_batch(utts, nj=opts.nj, device=logp.device if on_gpu else None)


@dataclass(frozen=True)
class TranscribeOptions:
    """How files are cut, batched and decoded (the decoder itself carries beam, LM, n-best)."""

    mode: str = "greedy"  # greedy | beam (the decoder's beam search, n-best, LM fusion)
    window: float = 30.0  # seconds per window
    overlap: float = 1.0  # seconds shared by neighbouring windows
    vad: VADConfig | None = None  # split at silences first (None: fixed windows only)
    batch_seconds: float = 120.0  # padded audio seconds per forward pass
    chunk_seconds: float = 600.0  # audio seconds read before transcribing (memory bound)
    nj: int = 1  # beam-search processes

    def __post_init__(self) -> None:
        if self.mode not in ("greedy", "beam"):
            raise ValueError(f"mode must be 'greedy' or 'beam', found {self.mode!r}")
        if self.overlap < 0 or self.window <= self.overlap:
            raise ValueError(
                f"need 0 <= overlap < window, found window {self.window} s, "
                f"overlap {self.overlap} s"
            )


def _regions(wav: np.ndarray, opts: TranscribeOptions) -> list[tuple[float, float]]:
    duration = len(wav) / SAMPLE_RATE
    return energy_vad(wav, opts.vad) if opts.vad is not None else [(0.0, duration)]


def _transcribe_chunk(
    model, decoder: CTCDecoder, loaded: list[tuple[AudioInput, np.ndarray]], opts
) -> list[TranscriptResult]:
    # per file, per region: its windows (file seconds)
    layout = [
        [split_windows(a, b, opts.window, opts.overlap) for a, b in _regions(wav, opts)]
        for _, wav in loaded
    ]
    windows = [
        _Window(i, a, b)
        for i, regions in enumerate(layout)
        for region in regions
        for a, b in region
    ]
    wavs = [wav for _, wav in loaded]
    hyps = iter(_window_hypotheses(model, decoder, wavs, windows, opts))  # in `windows` order
    k = decoder.config.nbest if opts.mode == "beam" else 1
    return [
        _stitch(item, len(wav) / SAMPLE_RATE, regions, hyps, model.stride, k)
        for (item, wav), regions in zip(loaded, layout, strict=True)
    ]


def _stitch(
    item: AudioInput,
    duration: float,
    regions: list[list[tuple[float, float]]],
    hyps: Iterator[list[Hypothesis]],
    stride: int,
    nbest: int,
) -> TranscriptResult:
    """One file's transcript from its windows' hypotheses (taken from ``hyps`` in order)."""
    per_window = []
    for region in regions:
        for (start, _), share in zip(region, _shares(region), strict=True):
            pieces = [
                _Piece(_owned_words(h, start, share, stride), h.score, h.am_score, h.lm_score)
                for h in next(hyps)
            ]
            per_window.append(pieces or [_Piece([])])
    combos = _best_combinations(per_window, nbest)
    best = combos[0]
    return TranscriptResult(
        item.id,
        item.source,
        duration,
        best.text,
        _monotonic(best.words, duration),
        [NBestEntry(p.text, p.score, p.am_score, p.lm_score) for p in combos],
    )


def iter_transcripts(
    model,
    inputs: Sequence[str | os.PathLike | AudioInput],
    decoder: CTCDecoder,
    opts: TranscribeOptions = TranscribeOptions(),
    allow_pipes: bool = False,
    preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[TranscriptResult | TranscribeError]:
    """Transcripts (or errors) in input order, a chunk of files at a time. ``inputs`` may be
    paths/folders/scp files (expanded by :func:`collect_inputs`) or :class:`AudioInput`.
    ``preprocess`` maps each loaded 16 kHz signal to the one transcribed (e.g. an enhancer's
    ``enhance_16k``; ``speechssl transcribe --enhance``)."""
    items = collect_inputs(inputs)
    pending: list[AudioInput | TranscribeError | tuple[AudioInput, np.ndarray]] = []
    seconds = 0.0
    for n, item in enumerate(items):
        if isinstance(item, AudioInput):
            try:
                wav = load_audio(
                    item.source,
                    SAMPLE_RATE,
                    resample=True,
                    start=item.start,
                    end=item.end,
                    allow_pipes=allow_pipes,
                    utt_id=item.id,
                )
                if preprocess is not None:
                    wav = preprocess(wav)
                item = (item, wav)
                seconds += len(wav) / SAMPLE_RATE
            except AudioError as e:
                item = TranscribeError(item.id, item.source, str(e))
        pending.append(item)
        if seconds >= opts.chunk_seconds or n == len(items) - 1:
            loaded = [p for p in pending if isinstance(p, tuple)]
            done = iter(_transcribe_chunk(model, decoder, loaded, opts) if loaded else [])
            yield from (next(done) if isinstance(p, tuple) else p for p in pending)
            pending, seconds = [], 0.0


def transcribe_files(
    model,
    paths: Sequence[str | AudioInput],
    decoder: CTCDecoder,
    window: float = 30.0,
    overlap: float = 1.0,
    vad: VADConfig | bool | None = None,
    mode: str = "greedy",
    batch_seconds: float = 120.0,
    nj: int = 1,
) -> list[TranscriptResult | TranscribeError]:
    """Transcribe files, folders, scp files or :class:`AudioInput`; one result (or error) per
    audio input, in order. ``vad=True`` uses the default :class:`VADConfig`."""
    vad_cfg = VADConfig() if vad is True else (vad or None)
    opts = TranscribeOptions(mode, window, overlap, vad_cfg, batch_seconds, nj=nj)
    return list(iter_transcripts(model, paths, decoder, opts))
