"""Fluent Speech Commands -> intent-classification data dirs (SUPERB IC).

Read (https://fluent.ai/fluent-speech-commands-a-dataset-for-spoken-language-understanding-research/)::

    fluent_speech_commands_dataset/data/{train,valid,test}_data.csv
        columns: <index>, path, speakerId, transcription, action, object, location
    fluent_speech_commands_dataset/wavs/speakers/<speakerId>/<id>.wav     16 kHz

Written under ``out`` (as the synthetic corpus's ``intents/``)::

    intents/train intents/dev intents/test   text + utt2intent "action object location"

Slot values are lower-cased with spaces joined by ``_`` ("change language" -> change_language,
"Chinese" -> chinese), the synthetic corpus's spelling, so that each label has exactly three
words. Utterance ids are ``<speakerId>-<wav stem>``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from speechssl.data.corpora.corpus import (
    CorpusError,
    audio_durations,
    locate_root,
    require,
    write_split,
)
from speechssl.data.text import normalize_text

CORPUS = "Fluent Speech Commands"
URL = (
    "https://fluent.ai/fluent-speech-commands-a-dataset-for-spoken-language-understanding-research/"
)
SPLITS = {"train": "train_data.csv", "dev": "valid_data.csv", "test": "test_data.csv"}
COLUMNS = ("path", "speakerId", "transcription", "action", "object", "location")


def slot_value(value: str) -> str:
    return "_".join(value.strip().lower().split())


def read_split_csv(root: Path, name: str) -> tuple[dict, dict, dict, dict]:
    """(wav_scp, utt2spk, text, utt2intent) of one of the official CSV files."""
    path = require(root / "data" / name, "an official split file", CORPUS, URL)
    wav_scp, utt2spk, text, intents = {}, {}, {}, {}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        absent = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise CorpusError(
                f"{path}: columns {', '.join(absent)} missing (header: {reader.fieldnames}); "
                f"expected {', '.join(COLUMNS)}; is this the official release ({URL})?"
            )
        for lineno, row in enumerate(reader, 2):
            wav = root / row["path"]
            if not wav.is_file():
                raise CorpusError(
                    f"{path}:{lineno}: {wav} not found; the wavs/ folder is incomplete, "
                    f"extract the corpus from {URL} again"
                )
            speaker = row["speakerId"].strip()
            utt = f"{speaker}-{wav.stem}"
            if utt in wav_scp:
                raise CorpusError(f"{path}:{lineno}: {row['path']} is listed twice")
            wav_scp[utt], utt2spk[utt] = str(wav), speaker
            # curly apostrophes in a few transcripts would otherwise split words
            text[utt] = normalize_text(row["transcription"].replace("\u2019", "'"))
            slots = [slot_value(row[s] or "") for s in ("action", "object", "location")]
            if not all(slots):
                raise CorpusError(f"{path}:{lineno}: empty action, object or location slot")
            intents[utt] = " ".join(slots)
    return wav_scp, utt2spk, text, intents


def prepare_fluent_speech_commands(
    corpus_root: str | os.PathLike, out_dir: str | os.PathLike
) -> dict[str, dict[str, object]]:
    """Write ``intents/{train,dev,test}`` from the official CSV splits; returns ``{data dir:
    {utterances, hours, speakers, labels}}``."""
    root = locate_root(
        corpus_root,
        "data/train_data.csv",
        CORPUS,
        URL,
        wrappers=("fluent_speech_commands_dataset",),
    )
    out = Path(out_dir)
    summary = {}
    for split, name in SPLITS.items():
        wav_scp, utt2spk, text, intents = read_split_csv(root, name)
        summary[f"intents/{split}"] = write_split(
            out / "intents" / split,
            wav_scp,
            utt2spk,
            audio_durations(wav_scp),
            text,
            {"utt2intent": intents},
        )
    return summary
