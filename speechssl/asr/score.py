"""Scoring: WER and CER through jiwer, a per-utterance alignment report and a summary.

``score_texts(refs, hyps)`` works on ``{utt: text}`` tables; ``score_dir(ref, hyp, out_dir)``
writes, for one decode directory:

- ``wer.txt``: one line like Kaldi's ``%WER 12.34 [ 56 / 454, 7 ins, 9 del, 40 sub ]`` plus CER
  and sentence error rate;
- ``summary.json``: the same numbers as data;
- ``per_utt.txt``: per utterance the counts and the aligned reference/hypothesis (sclite style:
  errors upper-cased, ``***`` for an inserted/deleted word; ``S``/``D``/``I`` marks).

Both sides are normalised with :func:`speechssl.data.text.normalize_text` first. An utterance
with no hypothesis is scored as an empty hypothesis (all deletions) and counted as missing.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import jiwer

from speechssl.data.kaldi import read_table
from speechssl.data.text import normalize_text
from speechssl.io import atomic_write_text


@dataclass
class ErrorCounts:
    words: int
    substitutions: int
    deletions: int
    insertions: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        return self.errors / max(self.words, 1)


@dataclass
class ScoreSummary:
    wer: float  # percent
    cer: float  # percent
    ser: float  # sentence error rate, percent
    words: int
    substitutions: int
    deletions: int
    insertions: int
    utterances: int
    missing: int  # references with no hypothesis

    def kaldi_line(self) -> str:
        errors = self.substitutions + self.deletions + self.insertions
        return (
            f"%WER {self.wer:.2f} [ {errors} / {self.words}, {self.insertions} ins, "
            f"{self.deletions} del, {self.substitutions} sub ]"
        )


def _pairs(refs: dict[str, str], hyps: dict[str, str]) -> tuple[list[str], list[str], list[str]]:
    if not refs:
        raise ValueError("no reference transcripts to score against")
    utts = sorted(refs)
    ref_texts = [normalize_text(refs[u]) for u in utts]
    hyp_texts = [normalize_text(hyps.get(u, "")) for u in utts]
    empty = [u for u, r in zip(utts, ref_texts, strict=True) if not r]
    if empty:
        raise ValueError(
            f"{len(empty)} reference transcript(s) are empty after normalisation, e.g. "
            f"'{empty[0]}'; remove them from the reference"
        )
    return utts, ref_texts, hyp_texts


def _counts(output) -> ErrorCounts:
    words = output.hits + output.substitutions + output.deletions
    return ErrorCounts(words, output.substitutions, output.deletions, output.insertions)


def score_texts(refs: dict[str, str], hyps: dict[str, str]) -> tuple[ScoreSummary, list[str]]:
    """The summary and the per-utterance report lines."""
    utts, ref_texts, hyp_texts = _pairs(refs, hyps)
    # jiwer rejects empty strings on the hypothesis side only in older versions; it scores an
    # empty hypothesis as all deletions in jiwer >= 3.
    words = jiwer.process_words(ref_texts, hyp_texts)
    chars = jiwer.process_characters(ref_texts, hyp_texts)
    total = _counts(words)
    report, wrong = [], 0
    for i, utt in enumerate(utts):
        ref_words, hyp_words = words.references[i], words.hypotheses[i]
        counts = ErrorCounts(len(ref_words), 0, 0, 0)
        ref_line, hyp_line, ops = [], [], []
        for chunk in words.alignments[i]:
            rs, re_ = chunk.ref_start_idx, chunk.ref_end_idx
            hs, he = chunk.hyp_start_idx, chunk.hyp_end_idx
            if chunk.type == "equal":
                for w in ref_words[rs:re_]:
                    ref_line.append(w)
                    hyp_line.append(w)
                    ops.append("")
            elif chunk.type == "substitute":
                counts.substitutions += re_ - rs
                for r, h in zip(ref_words[rs:re_], hyp_words[hs:he], strict=True):
                    ref_line.append(r.upper())
                    hyp_line.append(h.upper())
                    ops.append("S")
            elif chunk.type == "delete":
                counts.deletions += re_ - rs
                for r in ref_words[rs:re_]:
                    ref_line.append(r.upper())
                    hyp_line.append("***")
                    ops.append("D")
            else:  # insert
                counts.insertions += he - hs
                for h in hyp_words[hs:he]:
                    ref_line.append("***")
                    hyp_line.append(h.upper())
                    ops.append("I")
        wrong += counts.errors > 0
        widths = [max(len(a), len(b)) for a, b in zip(ref_line, hyp_line, strict=True)]
        report += [
            f"{utt}  #words {counts.words}  #sub {counts.substitutions}  #del {counts.deletions}"
            f"  #ins {counts.insertions}  WER {100 * counts.rate:.1f}",
            "REF:  " + " ".join(w.ljust(n) for w, n in zip(ref_line, widths, strict=True)),
            "HYP:  " + " ".join(w.ljust(n) for w, n in zip(hyp_line, widths, strict=True)),
            "OPS:  " + " ".join(o.ljust(n) for o, n in zip(ops, widths, strict=True)),
            "",
        ]
    summary = ScoreSummary(
        wer=100 * total.rate,
        cer=100 * chars.cer,
        ser=100 * wrong / len(utts),
        words=total.words,
        substitutions=total.substitutions,
        deletions=total.deletions,
        insertions=total.insertions,
        utterances=len(utts),
        missing=sum(u not in hyps for u in utts),
    )
    return summary, report


def score_dir(
    ref: str | os.PathLike, hyp: str | os.PathLike, out_dir: str | os.PathLike | None = None
) -> ScoreSummary:
    """Score a hypothesis ``text`` file against a reference ``text`` file (Kaldi tables); the
    report files go to ``out_dir`` (default: the hypothesis file's folder)."""
    ref, hyp = Path(ref), Path(hyp)
    for path in (ref, hyp):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: transcript file not found")
    refs, hyps = read_table(ref), read_table(hyp)
    unknown = sorted(set(hyps) - set(refs))
    if unknown:
        raise ValueError(
            f"{hyp}: {len(unknown)} utterance(s) have no reference in {ref}, e.g. '{unknown[0]}'"
        )
    summary, report = score_texts(refs, hyps)
    out = Path(out_dir) if out_dir is not None else hyp.parent
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        out / "wer.txt",
        f"{summary.kaldi_line()}\n%CER {summary.cer:.2f}\n%SER {summary.ser:.2f} "
        f"[ {round(summary.ser * summary.utterances / 100)} / {summary.utterances} ]\n",
    )
    atomic_write_text(out / "summary.json", json.dumps(asdict(summary), indent=2) + "\n")
    atomic_write_text(out / "per_utt.txt", "\n".join(report))
    return summary
