"""LibriSpeech -> data dirs for ASR and phone recognition (SUPERB ASR and PR).

Read (https://www.openslr.org/12)::

    LibriSpeech/<subset>/<reader>/<chapter>/<reader>-<chapter>-<utt>.flac
    LibriSpeech/<subset>/<reader>/<chapter>/<reader>-<chapter>.trans.txt  (<utt-id> UPPER CASE WORDS)
    LibriSpeech/SPEAKERS.TXT    (optional: ``;ID |SEX| SUBSET |MINUTES| NAME`` -> spk2gender)

and, for PR, a pronunciation lexicon, one ``WORD  PH1 PH2 ...`` line per pronunciation (the
first one of a word is used), e.g. ``librispeech-lexicon.txt`` (https://www.openslr.org/11).

Written under ``out`` (the synthetic corpus's names)::

    asr/train_labeled asr/dev asr/test   text; the speaker is the reader
    asr/train_unlabeled                  only with ``unlabeled_subsets`` (no text)
    asr/lm_text.txt                      training transcripts (+ ``lm_text``), no dev/test line
    phones/train phones/dev phones/test  text + utt2phones (ARPAbet from the lexicon)

SUPERB uses train-clean-100 / dev-clean / test-clean and stress-marked phones (its vocabulary has
AH0 AH1 AH2 ...); ``strip_stress`` gives the 39 base phones instead. An utterance with a word
missing from the lexicon is left out of ``phones/`` (counted, with examples, in a warning).
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from speechssl.data.corpora.corpus import (
    CorpusError,
    audio_durations,
    locate_root,
    missing,
    read_text_lines,
    warn,
    write_lines,
    write_split,
)
from speechssl.data.text import normalize_text

CORPUS = "LibriSpeech"
URL = "https://www.openslr.org/12"
LEXICON_URL = "https://www.openslr.org/resources/11/librispeech-lexicon.txt"
_STRESS = re.compile(r"(?<=[A-Z])[012]$")
_VARIANT = re.compile(r"\(\d+\)$")  # CMUdict-style alternative pronunciations: WORD(2)


class Subset(NamedTuple):
    name: str  # e.g. train-clean-100
    wav_scp: dict[str, str]
    utt2spk: dict[str, str]  # the reader
    words: dict[str, str]  # transcripts in the corpus's upper case

    @property
    def text(self) -> dict[str, str]:
        return {u: normalize_text(w) for u, w in self.words.items()}


def read_subset(root: Path, name: str) -> Subset:
    folder = root / name
    if not folder.is_dir():
        raise missing(folder, f"the {name} subset, {name}.tar.gz", CORPUS, URL)
    wav_scp, utt2spk, words = {}, {}, {}
    for trans in sorted(folder.glob("*/*/*.trans.txt")):
        for line in read_text_lines(trans):
            utt, _, transcript = line.partition(" ")
            flac = trans.parent / f"{utt}.flac"
            if not flac.is_file():
                raise CorpusError(
                    f"{flac}: not found, but {trans} has a transcript for '{utt}'; the subset "
                    f"is incomplete, extract {name}.tar.gz from {URL} again"
                )
            wav_scp[utt] = str(flac)
            utt2spk[utt] = utt.split("-")[0]
            words[utt] = transcript.strip()
    if not wav_scp:
        raise CorpusError(
            f"{folder}: no <reader>/<chapter>/*.trans.txt transcripts; extract {name}.tar.gz "
            f"from {URL} there"
        )
    return Subset(name, wav_scp, utt2spk, words)


def read_lexicon(path: Path, strip_stress: bool = False) -> dict[str, list[str]]:
    """WORD -> phones (the first pronunciation listed); ``;;;`` lines are comments."""
    if not path.is_file():
        raise CorpusError(
            f"{path}: not found (the pronunciation lexicon for the phone labels); download "
            f"{LEXICON_URL} or pass --lexicon FILE (any 'WORD PH1 PH2 ...' lexicon)"
        )
    lexicon: dict[str, list[str]] = {}
    for lineno, line in enumerate(read_text_lines(path), 1):
        if line.startswith(";;;"):
            continue
        word, *phones = line.split()
        if not phones:
            raise CorpusError(f"{path}:{lineno}: '{word}' has no phones; expected 'WORD PH1 PH2'")
        if strip_stress:
            phones = [_STRESS.sub("", p) for p in phones]
        lexicon.setdefault(_VARIANT.sub("", word).upper(), phones)
    return lexicon


def read_speaker_genders(root: Path) -> dict[str, str]:
    """Reader id -> ``m``/``f`` from SPEAKERS.TXT (empty if the file is not there)."""
    path = root / "SPEAKERS.TXT"
    if not path.is_file():
        return {}
    genders = {}
    for line in read_text_lines(path):
        fields = [f.strip() for f in line.split("|")]
        if line.startswith(";") or len(fields) < 2 or fields[1].upper() not in ("M", "F"):
            continue
        genders[fields[0]] = fields[1].lower()
    return genders


def phone_labels(words: dict[str, str], lexicon: dict[str, list[str]]) -> tuple[dict, list[str]]:
    """(utt -> phone string for utterances fully covered by the lexicon, sorted missing words)."""
    labels, oov = {}, set()
    for utt, transcript in words.items():
        unknown = [w for w in transcript.split() if w not in lexicon]
        if unknown:
            oov.update(unknown)
            continue
        labels[utt] = " ".join(p for w in transcript.split() for p in lexicon[w])
    return labels, sorted(oov)


def _lm_lines(data: dict[str, Subset], lm_text: Path | None) -> Iterator[str]:
    """Training transcripts, then ``lm_text``'s normalized lines; none equal to a dev or test
    transcript (the LM must not have seen the sentences it is evaluated on)."""
    held_out = set(data["dev"].text.values()) | set(data["test"].text.values())
    train = data["train"].text
    yield from (train[u] for u in sorted(train) if train[u] not in held_out)
    if lm_text is None:
        return
    opener = gzip.open if lm_text.suffix == ".gz" else open
    with opener(lm_text, "rt", encoding="utf-8") as f:
        for line in f:
            sentence = normalize_text(line)
            if sentence and sentence not in held_out:
                yield sentence


def _write_phones(
    path: Path, subset: Subset, lexicon: dict, durations: dict, tables: dict
) -> dict[str, object]:
    """The PR dir of ``subset``: its utterances whose words are all in the lexicon."""
    labels, oov = phone_labels(subset.words, lexicon)
    skipped = len(subset.words) - len(labels)
    if skipped:
        warn(
            "librispeech",
            f"{skipped} of {len(subset.words)} utterances of {subset.name} left out of {path}: "
            f"{len(oov)} words are not in the lexicon (e.g. {' '.join(oov[:5])})",
        )
    text = subset.text
    summary = write_split(
        path,
        {u: subset.wav_scp[u] for u in labels},
        {u: subset.utt2spk[u] for u in labels},
        durations,
        {u: text[u] for u in labels},
        {**tables, "utt2phones": labels},
    )
    return summary | {"skipped_oov": skipped}


def prepare_librispeech(
    corpus_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    train_subset: str = "train-clean-100",
    dev_subset: str = "dev-clean",
    test_subset: str = "test-clean",
    unlabeled_subsets: tuple[str, ...] = (),
    subsets: tuple[str, ...] = ("asr", "phones"),
    lexicon: str | os.PathLike | None = None,
    strip_stress: bool = False,
    lm_text: str | os.PathLike | None = None,
) -> dict[str, dict[str, object]]:
    """Write the ASR and/or PR data dirs; returns ``{data dir: {utterances, hours, speakers}}``
    (phone dirs also give ``skipped_oov``). ``lexicon`` defaults to ``librispeech-lexicon.txt``
    in the corpus folder or beside it; ``lm_text`` is an extra LM corpus (plain or .gz)."""
    unknown = sorted(set(subsets) - {"asr", "phones"})
    if unknown:
        raise ValueError(f"unknown subsets {unknown}; choose from asr, phones")
    root = locate_root(corpus_root, train_subset, CORPUS, URL, wrappers=("LibriSpeech",))
    out = Path(out_dir)
    lex = None
    if "phones" in subsets:
        lex = read_lexicon(_lexicon_path(root, lexicon), strip_stress)
    if lm_text is not None and not Path(lm_text).is_file():
        raise CorpusError(
            f"{lm_text}: not found (--lm-text); e.g. librispeech-lm-norm.txt.gz from "
            "https://www.openslr.org/11, or leave the option out"
        )
    genders = read_speaker_genders(root)
    splits = {"train": train_subset, "dev": dev_subset, "test": test_subset}
    data = {split: read_subset(root, name) for split, name in splits.items()}
    summary: dict[str, dict[str, object]] = {}
    for split, subset in data.items():
        durations = audio_durations(subset.wav_scp)
        tables = {"spk2gender": _genders_of(subset.utt2spk, genders)} if genders else {}
        if "asr" in subsets:
            name = "asr/train_labeled" if split == "train" else f"asr/{split}"
            summary[name] = write_split(
                out / name, subset.wav_scp, subset.utt2spk, durations, subset.text, tables
            )
        if lex is not None:
            summary[f"phones/{split}"] = _write_phones(
                out / "phones" / split, subset, lex, durations, tables
            )
    if "asr" in subsets:
        summary.update(_write_unlabeled(root, out, unlabeled_subsets, genders))
        lines = _lm_lines(data, Path(lm_text) if lm_text else None)
        summary["asr/lm_text.txt"] = {"sentences": write_lines(out / "asr" / "lm_text.txt", lines)}
    return summary


def _lexicon_path(root: Path, lexicon: str | os.PathLike | None) -> Path:
    if lexicon is not None:
        return Path(lexicon)
    for folder in (root, root.parent):
        if (folder / "librispeech-lexicon.txt").is_file():
            return folder / "librispeech-lexicon.txt"
    raise CorpusError(
        f"no pronunciation lexicon for the phone labels: librispeech-lexicon.txt is neither in "
        f"{root} nor in {root.parent}; download it from {LEXICON_URL} there or pass --lexicon "
        "FILE (any 'WORD PH1 PH2 ...' lexicon), or prepare only --subsets asr"
    )


def _genders_of(utt2spk: dict[str, str], genders: dict[str, str]) -> dict[str, str]:
    return {s: genders[s] for s in set(utt2spk.values()) if s in genders}


def _write_unlabeled(
    root: Path, out: Path, subsets: tuple[str, ...], genders: dict[str, str]
) -> dict[str, dict[str, object]]:
    """asr/train_unlabeled from ``subsets`` (their transcripts are ignored)."""
    if not subsets:
        return {}
    wav_scp: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    for name in subsets:
        subset = read_subset(root, name)
        wav_scp |= subset.wav_scp
        utt2spk |= subset.utt2spk
    tables = {"spk2gender": _genders_of(utt2spk, genders)} if genders else {}
    name = "asr/train_unlabeled"
    return {name: write_split(out / name, wav_scp, utt2spk, audio_durations(wav_scp), None, tables)}
