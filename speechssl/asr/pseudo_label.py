"""Pseudo-labels for ASR self-training from one or more teachers' n-best lists, with filters.

Input: each teacher's decode dir of the unlabeled set (``speechssl asr-decode`` writes
``nbest.jsonl``: per utterance the n-best hypotheses with total, AM and LM scores). Output: a
Kaldi data dir of the kept utterances with ``text`` = the pseudo-label, ``utt2weight`` = its
confidence, and ``pseudo_label.json`` = what each step did.

Combining teachers (``combine``):

- ``best``: the first teacher's 1-best (one teacher, or a chosen one);
- ``fusion``: n-best score fusion — each teacher's n-best scores turned into a posterior over
  its hypotheses (``softmax(score / temperature)``), summed over teachers per distinct text; the
  text with the largest sum wins, its confidence is that sum over the number of teachers;
- ``vote``: ROVER-style word voting — every teacher's 1-best aligned to the pivot (the fusion
  winner) by edit distance; each pivot word slot takes the word most teachers put there
  (deletion included), an insertion is kept when most teachers inserted the same word;
  confidence = mean over slots of the winning vote's share;
- ``sample``: the sample ensemble — ``text`` (filters, report, weight) is the fusion's label,
  and every teacher's 1-best is written as ``utt2text<i>``; the student's data loader draws one
  of them per utterance and batch (seeded, so each epoch draws anew and a resume repeats it).

Filters, in this order, each reporting how many utterances it removed and — when the data dir
has reference ``text`` (the synthetic corpus has) — the pseudo-label WER of what is kept:

- ``empty``: no words;
- ``length``: words per second of audio outside ``[min_wps, max_wps]``;
- ``looping``: some n-gram (``loop_ngram`` words) occurs ``loop_count`` times or more;
- ``confidence``: the lowest ``drop_lowest`` percent of the remaining utterances by confidence
  (for ``best``, the length-normalised score: total score over the number of words + 1).

``utt2weight``, the loss weight of a kept utterance, is a probability: its confidence for
``fusion`` and ``vote``, the 1-best's posterior in the teacher's n-best list for ``best``.

n-best multi-target (``multi_target`` = N > 1): each kept utterance also gets up to N - 1
alternative targets, the next most probable distinct texts of the (fused) n-best posteriors
that are not empty and not looping, as extra utterances ``<utt>-nb<k>`` (same audio, features
and speaker) whose ``utt2weight`` is that text's posterior; CTC weighted per utterance then
trains on ``sum_k p_k CTC(y_k)``. The 1-best item is the one the single-target run has.

This is the command-line step ``speechssl pseudo-label``; the references, when present, are
only used for the report, never for a choice.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from speechssl.asr.score import score_texts
from speechssl.data.kaldi import DataDir, DataDirError, read_table
from speechssl.data.split import write_selection
from speechssl.errors import SpeechSSLError
from speechssl.io import atomic_write_text

COMBINE = ("best", "fusion", "vote", "sample")


class PseudoLabelError(SpeechSSLError, ValueError):
    """A teacher's decode dir or an option cannot be used; the message names it."""


@dataclass
class Hyp:
    text: str
    score: float
    num_words: int


@dataclass
class FilterConfig:
    min_wps: float = 0.5  # words per second of audio
    max_wps: float = 6.0
    loop_ngram: int = 2
    loop_count: int = 3
    drop_lowest: float = 10.0  # percent of the remaining utterances, by confidence

    def __post_init__(self) -> None:
        if not 0 <= self.drop_lowest < 100:
            raise PseudoLabelError(f"drop_lowest must be in [0, 100), found {self.drop_lowest}")


@dataclass
class PseudoLabelConfig:
    combine: str = "fusion"
    temperature: float = 1.0  # of the n-best posteriors (fusion)
    filters: FilterConfig = field(default_factory=FilterConfig)
    multi_target: int = 1  # targets per kept utterance: the label and N - 1 n-best alternatives

    def __post_init__(self) -> None:
        if self.combine not in COMBINE:
            raise PseudoLabelError(f"combine must be one of {COMBINE}, not {self.combine!r}")
        if self.temperature <= 0:
            raise PseudoLabelError(f"temperature must be > 0, found {self.temperature}")
        if self.multi_target < 1:
            raise PseudoLabelError(f"multi_target must be >= 1, found {self.multi_target}")


def read_nbest(decode_dir: str | os.PathLike) -> dict[str, list[Hyp]]:
    """``<decode_dir>/nbest.jsonl`` -> utt -> n-best hypotheses (best first)."""
    path = Path(decode_dir) / "nbest.jsonl"
    if not path.is_file():
        raise PseudoLabelError(
            f"{path}: missing; decode the unlabeled set with `speechssl asr-decode --mode beam` "
            "first (it writes nbest.jsonl)"
        )
    out: dict[str, list[Hyp]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            hyps = [
                Hyp(h["text"], float(h["score"]), int(h.get("num_words", len(h["text"].split()))))
                for h in record["nbest"]
            ]
            out[record["utt"]] = hyps
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise PseudoLabelError(f"{path}:{number}: not an n-best record ({e})") from None
    return out


def fused_posteriors(teachers: list[list[Hyp]], temperature: float = 1.0) -> dict[str, float]:
    """Each distinct text's posterior, ``softmax(score / temperature)`` over a teacher's n-best
    list, summed over teachers and divided by their number (a teacher with no list adds 0)."""
    totals: dict[str, float] = {}
    for nbest in teachers:
        if not nbest:
            continue
        scores = np.array([h.score for h in nbest]) / temperature
        post = np.exp(scores - scores.max())
        post /= post.sum()
        for h, p in zip(nbest, post, strict=True):
            totals[h.text] = totals.get(h.text, 0.0) + float(p)
    return {t: v / len(teachers) for t, v in totals.items()}


def fuse(teachers: list[list[Hyp]], temperature: float = 1.0) -> tuple[str, float]:
    """n-best score fusion over teachers: the text with the largest summed posterior."""
    post = fused_posteriors(teachers, temperature)
    if not post:
        return "", 0.0
    text = max(post, key=lambda t: (post[t], t))
    return text, post[text]


def _align(ref: list[str], hyp: list[str]) -> list[tuple[int | None, str | None]]:
    """Edit-distance alignment of ``hyp`` to ``ref``: ``(ref position or None, hyp word or
    None)`` pairs in order (None word: a deletion; None position: an insertion)."""
    n, m = len(ref), len(hyp)
    cost = np.zeros((n + 1, m + 1), dtype=np.int64)
    cost[:, 0], cost[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            sub = cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1])
            cost[i, j] = min(sub, cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    pairs: list[tuple[int | None, str | None]] = []
    i, j = n, m
    while i or j:
        if i and j and cost[i, j] == cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            pairs.append((i - 1, hyp[j - 1]))
            i, j = i - 1, j - 1
        elif i and cost[i, j] == cost[i - 1, j] + 1:
            pairs.append((i - 1, None))
            i -= 1
        else:
            pairs.append((None, hyp[j - 1]))
            j -= 1
    return pairs[::-1]


def vote(pivot: str, hyps: list[str]) -> tuple[str, float]:
    """ROVER-style word voting of ``hyps`` (one per teacher) on the slots of ``pivot``."""
    ref = pivot.split()
    slots: list[Counter] = [Counter() for _ in ref]
    inserted: list[Counter] = [Counter() for _ in range(len(ref) + 1)]  # before slot i
    for hyp in hyps:
        before = 0
        seen_ins: set[tuple[int, str]] = set()
        for pos, word in _align(ref, hyp.split()):
            if pos is None:
                if (before, word) not in seen_ins:
                    inserted[before][word] += 1
                    seen_ins.add((before, word))
            else:
                slots[pos][word] += 1  # word None: this teacher deleted the slot
                before = pos + 1
    words, shares = [], []
    half = len(hyps) / 2
    for i in range(len(ref) + 1):
        for word, count in inserted[i].most_common(1):
            if count > half:
                words.append(word)
                shares.append(count / len(hyps))
        if i < len(ref):
            (word, count), *_ = sorted(slots[i].items(), key=lambda kv: (-kv[1], kv[0] or ""))
            shares.append(count / len(hyps))
            if word is not None:
                words.append(word)
    return " ".join(words), float(np.mean(shares)) if shares else 0.0


def is_looping(text: str, ngram: int, count: int) -> bool:
    words = text.split()
    grams = Counter(tuple(words[i : i + ngram]) for i in range(len(words) - ngram + 1))
    return bool(grams) and max(grams.values()) >= count


def combine_teachers(
    teachers: list[dict[str, list[Hyp]]], utts: list[str], cfg: PseudoLabelConfig
) -> dict[str, tuple[str, float]]:
    """utt -> (pseudo-label, confidence) for every utterance every teacher decoded."""
    out = {}
    for utt in utts:
        lists = [t.get(utt, []) for t in teachers]
        if cfg.combine == "best":
            best = lists[0][0] if lists[0] else Hyp("", -math.inf, 0)
            out[utt] = (best.text, best.score / (best.num_words + 1))
        else:
            text, conf = fuse(lists, cfg.temperature)
            if cfg.combine == "vote":
                text, conf = vote(text, [nb[0].text if nb else "" for nb in lists])
            out[utt] = (text, conf)
    return out


def weights_and_alternatives(
    teachers: list[dict[str, list[Hyp]]],
    kept: dict[str, tuple[str, float]],
    cfg: PseudoLabelConfig,
) -> tuple[dict[str, float], dict[str, list[tuple[str, float]]]]:
    """Per kept utterance: the label's loss weight (a probability) and up to
    ``multi_target - 1`` alternative (text, posterior) pairs, most probable first."""
    weights, alternatives = {}, {}
    for utt, (text, conf) in kept.items():
        lists = [t.get(utt, []) for t in (teachers[:1] if cfg.combine == "best" else teachers)]
        post = fused_posteriors(lists, cfg.temperature)
        weights[utt] = post.get(text, 0.0) if cfg.combine == "best" else conf
        f = cfg.filters
        others = [t for t in post if t != text and t.split() and not is_looping(t, f.loop_ngram, f.loop_count)]  # fmt: skip
        others.sort(key=lambda t: (-post[t], t))
        alternatives[utt] = [(t, post[t]) for t in others[: cfg.multi_target - 1]]
    return weights, alternatives


def _with_alternatives(
    data: DataDir, alternatives: dict[str, list[tuple[str, float]]]
) -> tuple[DataDir, set[str]]:
    """``data`` plus one utterance ``<utt>-nb<k>`` per alternative target (k = 2, 3, ...):
    the same recording (or segment), speaker and per-utterance tables, the alternative text."""
    text, tables = dict(data.text or {}), {n: dict(t) for n, t in data.tables.items()}
    wav_scp, utt2spk = dict(data.wav_scp), dict(data.utt2spk)
    segments = None if data.segments is None else dict(data.segments)
    added = set()
    for utt, alts in alternatives.items():
        for k, (alt, weight) in enumerate(alts, start=2):
            new = f"{utt}-nb{k}"
            if new in utt2spk:
                raise PseudoLabelError(
                    f"{data.path}: utterance id '{new}' exists already; the n-best "
                    "multi-target option names its extra targets <utt>-nb<k>"
                )
            utt2spk[new], text[new] = utt2spk[utt], alt
            if segments is None:
                wav_scp[new] = wav_scp[utt]
            else:
                segments[new] = segments[utt]
            for name, table in tables.items():
                if utt in table and not name.startswith("utt2text"):  # its own text, no draw
                    table[new] = table[utt]
            tables["utt2weight"][new] = f"{weight:.6g}"
            added.add(new)
    return replace(data, wav_scp=wav_scp, utt2spk=utt2spk, text=text, segments=segments,
                   tables=tables), added  # fmt: skip


def _wer(refs: dict[str, str] | None, labels: dict[str, tuple[str, float]]) -> float | None:
    if not refs or not labels:
        return None
    kept = {u: refs[u] for u in labels if u in refs}
    return score_texts(kept, {u: t for u, (t, _) in labels.items() if u in kept})[0].wer


def apply_filters(
    labels: dict[str, tuple[str, float]],
    durations: dict[str, float],
    cfg: FilterConfig,
    refs: dict[str, str] | None = None,
) -> tuple[dict[str, tuple[str, float]], list[dict]]:
    """The kept labels and one report row per step: name, removed, kept, WER of the kept."""
    report = [{"step": "combined", "removed": 0, "kept": len(labels), "wer": _wer(refs, labels)}]

    def step(name: str, keep) -> None:
        nonlocal labels
        before = len(labels)
        labels = {u: v for u, v in labels.items() if keep(u, v)}
        report.append(
            {"step": name, "removed": before - len(labels), "kept": len(labels),
             "wer": _wer(refs, labels)}
        )  # fmt: skip

    step("empty", lambda u, v: bool(v[0].split()))

    def plausible(u, v):
        seconds = durations.get(u)
        if not seconds:
            return True
        wps = len(v[0].split()) / seconds
        return cfg.min_wps <= wps <= cfg.max_wps

    step("length", plausible)
    step("looping", lambda u, v: not is_looping(v[0], cfg.loop_ngram, cfg.loop_count))
    if labels and cfg.drop_lowest > 0:  # the lowest p percent by rank (ties: by utterance id)
        order = sorted(labels, key=lambda u: (labels[u][1], u))
        dropped = set(order[: int(len(order) * cfg.drop_lowest / 100)])
        step("confidence", lambda u, v: u not in dropped)
    return labels, report


def _durations(data: DataDir) -> dict[str, float]:
    durations = data.durations()
    if durations is not None:
        return durations
    import soundfile as sf

    out = {}
    for utt in data.utt_ids:
        entry, start, end = data.audio_source(utt)
        if end is not None:
            out[utt] = end - start
            continue
        try:
            info = sf.info(data.resolve(entry))
            out[utt] = info.frames / info.samplerate
        except (RuntimeError, OSError):
            continue  # unreadable or a pipe: no length filter for it
    return out


def write_soft_targets(teacher_dirs, utts: list[str], path: Path, aliases=()) -> Path:
    """The teachers' frame posteriors averaged (in probability) for ``utts``, as float16; an
    alias ``<utt>-nb<k>`` (an n-best alternative target) shares its utterance's."""
    import torch

    from speechssl.asr.dataset import SOFT_FORMAT
    from speechssl.io import atomic_torch_save

    tokens = stride = None
    sums: dict[str, torch.Tensor] = {}
    for d in teacher_dirs:
        cache = Path(d) / "logprobs.pt"
        if not cache.is_file():
            raise PseudoLabelError(f"{cache}: missing; soft targets need the teacher's decode dir")
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        if tokens is None:
            tokens, stride = list(saved["tokens"]), saved["stride"]
        elif list(saved["tokens"]) != tokens or saved["stride"] != stride:
            raise PseudoLabelError(
                f"{d}: its tokens or frame rate differ from {teacher_dirs[0]}'s; soft targets "
                "average teachers with one vocabulary and one frame rate"
            )
        for u in utts:
            if u not in saved["logprobs"]:
                raise PseudoLabelError(f"{cache}: no posteriors for utterance '{u}'")
            p = saved["logprobs"][u].double().exp()
            if u in sums and sums[u].shape != p.shape:
                raise PseudoLabelError(
                    f"{d}: utterance '{u}' has {len(p)} frames, not {len(sums[u])}"
                )
            sums[u] = sums[u] + p if u in sums else p
    posteriors = {u: (s / len(teacher_dirs)).to(torch.float16) for u, s in sums.items()}
    posteriors.update({a: posteriors[a.rsplit("-nb", 1)[0]] for a in aliases})
    payload = {"format": SOFT_FORMAT, "tokens": tokens, "stride": stride, "posteriors": posteriors}
    return atomic_torch_save(payload, path)


def pseudo_label(
    data: str | os.PathLike,
    teacher_dirs: list[str | os.PathLike],
    out: str | os.PathLike,
    cfg: PseudoLabelConfig | None = None,
    oracle_text: str | os.PathLike | None = None,
    soft_targets: bool = False,
) -> list[dict]:
    """Combine, filter and write ``out`` (a data dir of the kept utterances); returns the
    report rows (also in ``<out>/pseudo_label.json``). The pseudo-label WER of the report is
    scored on ``oracle_text`` (a text table kept outside the data dir, see ``speechssl data
    hide-text``) when given, else on ``data``'s own text if it has one. ``soft_targets``: also
    write ``<out>/soft_targets.pt``, the teachers' CTC posteriors (from each decode dir's
    ``logprobs.pt``) averaged per frame, for ``asr-train --set data.pseudo_targets=soft``."""
    cfg = cfg or PseudoLabelConfig()
    if not teacher_dirs:
        raise PseudoLabelError("give at least one teacher decode dir (--teacher DIR)")
    source = DataDir.load(data)
    teachers = [read_nbest(d) for d in teacher_dirs]
    for d, t in zip(teacher_dirs, teachers, strict=True):
        missing = [u for u in source.utt_ids if u not in t]
        if missing:
            raise PseudoLabelError(
                f"{d}/nbest.jsonl: no hypotheses for {len(missing)} utterance(s) of {data}, "
                f"e.g. '{missing[0]}'; decode the same data dir with every teacher"
            )
    labels = combine_teachers(teachers, source.utt_ids, cfg)
    refs = source.text
    if oracle_text is not None:
        refs = read_table(oracle_text)  # for the report only, never for a choice
    kept, report = apply_filters(labels, _durations(source), cfg.filters, refs)
    if not kept:
        raise PseudoLabelError(
            f"every utterance of {data} was filtered out ({report}); relax the filters"
        )
    # the pseudo-labels as the text, their confidences as utt2weight; the kept utterances (with
    # their recordings and tables) written by the data dir's own subset writer
    weights, alternatives = weights_and_alternatives(teachers, kept, cfg)
    tables = {**source.tables, "utt2weight": {u: f"{w:.6g}" for u, w in weights.items()}}
    if cfg.combine == "sample":  # every teacher's 1-best, drawn from by the data loader
        for i, t in enumerate(teachers, start=1):
            tables[f"utt2text{i}"] = {u: t[u][0].text if t[u] else "" for u in kept}
    labelled = replace(source, text={u: label for u, (label, _) in kept.items()}, tables=tables)
    labelled, added = _with_alternatives(labelled, alternatives)
    try:
        write_selection(labelled, set(kept) | added, out)
    except OSError as e:
        raise DataDirError(f"{out}: cannot write the pseudo-labelled data dir ({e})") from None
    if soft_targets:
        write_soft_targets(teacher_dirs, sorted(kept), Path(out) / "soft_targets.pt", added)
    summary = {
        "multi_target": {"n": cfg.multi_target, "added": len(added)},
        "soft_targets": soft_targets,
        "config": asdict(cfg),
        "teachers": [str(d) for d in teacher_dirs],
        "data": str(data),
        "scored_on": str(oracle_text) if oracle_text is not None else None,
        "steps": report,
    }
    atomic_write_text(Path(out) / "pseudo_label.json", json.dumps(summary, indent=1) + "\n")
    return report
