"""Speech Commands v0.01 -> keyword-spotting data dirs (SUPERB KS, 12 classes).

Read (http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz, which unpacks without a
top folder, and the separate test set
http://download.tensorflow.org/data/speech_commands_test_set_v0.01.tar.gz)::

    <root>/<word>/<speaker-hash>_nohash_<n>.wav      1 s or shorter, 16 kHz
    <root>/_background_noise_/*.wav                 long noise recordings
    <root>/validation_list.txt  testing_list.txt    <word>/<file>.wav, one a line
    <test-root>/<label>/*.wav                       the 12 classes, _silence_ and _unknown_ too

Written under ``out`` (as the synthetic corpus's ``keywords/``)::

    keywords/train  every file in no list     utt2keyword: the 10 words, else _unknown_
    keywords/dev    validation_list.txt       + _silence_ clips
    keywords/test   the official test set     (labels from its folders)
    wav/silence/    the _silence_ clips: consecutive 1 s windows of each background noise
                    recording, the first windows for train and the last ``silence_dev_fraction``
                    for dev (so no clip of dev overlaps one of train)

As in SUPERB, testing_list.txt is not used (the official test set replaces it) and the classes
are left unbalanced: the KS task samples them class-balanced. Utterance ids are
``<speaker-hash>-<word>-<n>`` (silence: ``noise-<recording>-<window>``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from speechssl.data.audio import SAMPLE_RATE, load_audio, write_wav
from speechssl.data.corpora.corpus import (
    CorpusError,
    audio_durations,
    locate_root,
    read_text_lines,
    relative_to_dir,
    require,
    visible,
    write_split,
)
from speechssl.io import remove_stale_temp_files

CORPUS = "Speech Commands v0.01"
URL = "http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz"
TEST_URL = "http://download.tensorflow.org/data/speech_commands_test_set_v0.01.tar.gz"
TEST_FOLDER = "speech_commands_test_set_v0.01"
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN, SILENCE = "_unknown_", "_silence_"
CLASSES = KEYWORDS + (UNKNOWN, SILENCE)
SILENCE_SPEAKER = "noise"
NOISE_FOLDER = "_background_noise_"
_CLIP = re.compile(r"^([0-9a-f]+)_nohash_(\d+)$")


def keyword_class(word: str) -> str:
    """The SUPERB label of a folder name: the word itself for the 10 keywords."""
    return word if word in CLASSES else UNKNOWN


def _utterance(path: Path, folder: str) -> tuple[str, str]:
    """(utt id, speaker) of ``<folder>/<file>.wav``; files not named ``<hash>_nohash_<n>`` (some
    of the test set's) keep their stem, under speaker ``noise`` or ``unknown``."""
    match = _CLIP.match(path.stem)
    if match:
        return f"{match[1]}-{folder}-{match[2]}", match[1]
    speaker = SILENCE_SPEAKER if folder == SILENCE else "unknown"
    return f"{speaker}-{folder}-{re.sub(r'[^A-Za-z0-9_.]', '_', path.stem)}", speaker


def _read_list(root: Path, name: str) -> set[str]:
    path = require(root / name, "the official split list", CORPUS, URL)
    entries = set(read_text_lines(path))
    for entry in sorted(entries):
        if not (root / entry).is_file():
            raise CorpusError(
                f"{path}: lists {entry}, which is not in {root}; the corpus is incomplete, "
                f"extract {URL} again"
            )
    return entries


def _clips(folders: list[Path], keep: Callable[[str], bool]) -> tuple[dict, dict, dict]:
    """(wav_scp, utt2spk, utt2keyword) of the wav files under ``folders`` that ``keep``
    (called with ``<folder>/<file>.wav``) accepts."""
    wav_scp, utt2spk, labels = {}, {}, {}
    for folder in folders:
        for wav in visible(folder, "*.wav"):
            if not keep(f"{folder.name}/{wav.name}"):
                continue
            utt, speaker = _utterance(wav, folder.name)
            wav_scp[utt], utt2spk[utt] = str(wav), speaker
            labels[utt] = keyword_class(folder.name)
    return wav_scp, utt2spk, labels


def cut_silence(
    root: Path, out: Path, dev_fraction: float
) -> dict[str, tuple[dict[str, Path], dict[str, float]]]:
    """Write 1 s windows of every background-noise recording under ``out/wav/silence``;
    returns ``{"train"|"dev": ({utt: wav path}, {utt: seconds})}``."""
    noise_dir = require(root / NOISE_FOLDER, "the background noise recordings", CORPUS, URL)
    clips: dict[str, tuple[dict[str, Path], dict[str, float]]] = {
        "train": ({}, {}),
        "dev": ({}, {}),
    }
    wav_dir = out / "wav" / "silence"
    if wav_dir.is_dir():
        remove_stale_temp_files(wav_dir)  # left by a killed run
    for recording in visible(noise_dir, "*.wav"):
        noise = load_audio(recording)
        windows = len(noise) // SAMPLE_RATE
        n_dev = int(round(dev_fraction * windows)) if windows > 1 else 0
        name = re.sub(r"[^A-Za-z0-9_.]", "_", recording.stem)
        for k in range(windows):
            utt = f"{SILENCE_SPEAKER}-{name}-{k:04d}"
            path = wav_dir / f"{utt}.wav"
            if not path.is_file():  # a rerun keeps the clips written before
                write_wav(path, noise[k * SAMPLE_RATE : (k + 1) * SAMPLE_RATE])
            split = "dev" if k >= windows - n_dev else "train"
            clips[split][0][utt] = path
            clips[split][1][utt] = 1.0
    if not clips["train"][0]:
        raise CorpusError(
            f"{noise_dir}: no recording of 1 s or longer to cut _silence_ clips from; "
            f"extract {URL} again"
        )
    return clips


def prepare_speech_commands(
    corpus_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    test_root: str | os.PathLike | None = None,
    silence_dev_fraction: float = 0.1,
) -> dict[str, dict[str, object]]:
    """Write ``keywords/{train,dev,test}``; returns ``{data dir: {utterances, hours, speakers,
    labels}}``. ``test_root`` defaults to ``speech_commands_test_set_v0.01`` inside or beside
    the corpus folder."""
    if not 0 <= silence_dev_fraction < 1:
        raise ValueError(f"silence_dev_fraction must be in [0, 1), got {silence_dev_fraction}")
    root = locate_root(
        corpus_root, "validation_list.txt", CORPUS, URL, wrappers=("speech_commands_v0.01",)
    )
    test_dir = _test_root(root, test_root)
    out = Path(out_dir)
    dev_list = _read_list(root, "validation_list.txt")
    held_out = dev_list | _read_list(root, "testing_list.txt")
    words = [
        d for d in visible(root) if d.is_dir() and not d.name.startswith("_") and d != test_dir
    ]
    test_folders = [d for d in visible(test_dir) if d.is_dir()]
    if not test_folders:
        raise CorpusError(f"{test_dir}: no <label>/ folders; extract {TEST_URL} there")
    silence = cut_silence(root, out, silence_dev_fraction)
    splits = {
        "train": _clips(words, lambda entry: entry not in held_out),
        "dev": _clips(words, lambda entry: entry in dev_list),
        "test": _clips(test_folders, lambda entry: True),
    }
    summary = {}
    for split, (wav_scp, utt2spk, labels) in splits.items():
        durations = audio_durations(wav_scp)
        path = out / "keywords" / split
        if split in silence:
            clips, seconds = silence[split]
            for utt, clip in clips.items():
                wav_scp[utt] = relative_to_dir(clip, path)
                utt2spk[utt], labels[utt] = SILENCE_SPEAKER, SILENCE
            durations |= seconds
        summary[f"keywords/{split}"] = write_split(
            path, wav_scp, utt2spk, durations, tables={"utt2keyword": labels}
        )
    return summary


def _test_root(root: Path, test_root: str | os.PathLike | None) -> Path:
    if test_root is not None:
        path = Path(os.path.abspath(test_root))
        if not path.is_dir():
            raise CorpusError(
                f"{path}: no such folder (--test-root); download the official test set from "
                f"{TEST_URL} and extract it there"
            )
        return path
    for candidate in (root / TEST_FOLDER, root.parent / TEST_FOLDER):
        if candidate.is_dir():
            return candidate
    raise CorpusError(
        f"the official test set is neither in {root / TEST_FOLDER} nor in "
        f"{root.parent / TEST_FOLDER}; download {TEST_URL}, extract it into one of them "
        "(the archive has no top folder) or pass --test-root DIR"
    )
