"""VoiceBank-DEMAND -> speech-enhancement data dirs (SUPERB SE).

Read (https://datashare.ed.ac.uk/handle/10283/2791)::

    clean_trainset_28spk_wav/ noisy_trainset_28spk_wav/   p226_001.wav ... (28 speakers)
    clean_testset_wav/ noisy_testset_wav/                  p232_001.wav ... (p232, p257)
    trainset_28spk_txt/ testset_txt/                       p226_001.txt (optional: text)

The originals are **48 kHz**. The toolkit runs at 16 kHz, so the preparer writes 16 kHz copies
(soxr, high quality, 16-bit PCM) under ``<out>/wav/{noisy,clean}_{train,test}/`` once, which
is what SpeechBrain's SUPERB preparation does too; the data dirs list the copies.

Written under ``out`` (as the synthetic corpus's ``noisy/``)::

    noisy/train  the training speakers minus ``dev_speakers``   wav.scp = noisy, clean.scp = clean
    noisy/dev    ``dev_speakers`` (default p226 and p287, SpeechBrain's choice)
    noisy/test   the test set

Utterance ids are the file stems (``p226_001``: the speaker is the prefix).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import soundfile as sf

from speechssl.data.audio import SAMPLE_RATE, load_audio, write_wav
from speechssl.data.corpora.corpus import (
    CorpusError,
    locate_root,
    missing,
    read_text_lines,
    relative_to_dir,
    visible,
    write_split,
)
from speechssl.data.text import normalize_text
from speechssl.io import remove_stale_temp_files

CORPUS = "VoiceBank-DEMAND"
URL = "https://datashare.ed.ac.uk/handle/10283/2791"
FOLDERS = {
    "train": ("noisy_trainset_28spk_wav", "clean_trainset_28spk_wav", "trainset_28spk_txt"),
    "test": ("noisy_testset_wav", "clean_testset_wav", "testset_txt"),
}
DEV_SPEAKERS = ("p226", "p287")


def resample_copy(source: Path, target: Path) -> int:
    """Write ``source`` (48 kHz) as a 16 kHz ``target`` unless it exists; returns its samples."""
    if target.is_file():  # written whole by an earlier run (write_wav renames into place)
        return sf.info(str(target)).frames
    wav = load_audio(source, SAMPLE_RATE, utt_id=source.stem, resample=True)
    write_wav(target, wav)
    return len(wav)


def read_pairs(root: Path, part: str) -> tuple[dict[str, Path], dict[str, Path], dict[str, str]]:
    """({utt: noisy wav}, {utt: clean wav}, {utt: text if the txt folder is there})."""
    noisy_name, clean_name, text_name = FOLDERS[part]
    noisy_dir, clean_dir = root / noisy_name, root / clean_name
    for folder in (noisy_dir, clean_dir):
        if not folder.is_dir():
            raise missing(folder, f"{folder.name}.zip", CORPUS, URL)
    noisy = {p.stem: p for p in visible(noisy_dir, "*.wav")}
    if not noisy:
        raise CorpusError(f"{noisy_dir}: no .wav files; extract {noisy_name}.zip from {URL}")
    clean = {}
    for utt in noisy:
        clean[utt] = clean_dir / f"{utt}.wav"
        if not clean[utt].is_file():
            raise CorpusError(
                f"{clean[utt]}: not found, but {noisy[utt]} is; the clean and noisy folders must "
                f"hold the same files, extract {clean_name}.zip from {URL} again"
            )
    text = {}
    if (root / text_name).is_dir():
        for utt in noisy:
            path = root / text_name / f"{utt}.txt"
            if path.is_file():
                text[utt] = normalize_text(" ".join(read_text_lines(path)))
    return noisy, clean, text


def speaker_of(utt: str) -> str:
    return utt.split("_")[0]


def _check_dev_speakers(dev_speakers: tuple[str, ...], speakers: set[str]) -> None:
    absent = sorted(set(dev_speakers) - speakers)
    if absent or not dev_speakers:
        raise CorpusError(
            f"--dev-speakers {','.join(dev_speakers) or '(none)'}: give training speakers "
            f"({'not found: ' + ', '.join(absent) + '; ' if absent else ''}"
            f"the training set has {', '.join(sorted(speakers))})"
        )
    if set(dev_speakers) == speakers:
        raise CorpusError(f"--dev-speakers {','.join(dev_speakers)}: leaves no training speaker")


def resample_all(jobs: list[tuple[Path, Path]], nj: int) -> dict[Path, int]:
    """Run ``resample_copy`` on each (source, target); returns target -> samples."""
    if nj > 1:
        with ProcessPoolExecutor(max_workers=nj) as pool:
            lengths = list(pool.map(_resample_job, jobs, chunksize=32))
    else:
        lengths = [_resample_job(job) for job in jobs]
    return {target: n for (_, target), n in zip(jobs, lengths)}


def _resample_job(job: tuple[Path, Path]) -> int:
    return resample_copy(*job)


def prepare_voicebank_demand(
    corpus_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    dev_speakers: tuple[str, ...] = DEV_SPEAKERS,
    nj: int = 1,
) -> dict[str, dict[str, object]]:
    """Resample to 16 kHz and write ``noisy/{train,dev,test}``; returns ``{data dir:
    {utterances, hours, speakers}}``. ``nj`` processes resample in parallel."""
    root = locate_root(corpus_root, FOLDERS["train"][0], CORPUS, URL, wrappers=("DS_10283_2791",))
    out = Path(out_dir)
    parts = {part: read_pairs(root, part) for part in FOLDERS}
    _check_dev_speakers(dev_speakers, {speaker_of(u) for u in parts["train"][0]})
    wav_dir = out / "wav"
    if wav_dir.is_dir():
        remove_stale_temp_files(wav_dir)  # left by a killed run

    def copy(kind: str, part: str, utt: str) -> Path:
        return wav_dir / f"{kind}_{part}" / f"{utt}.wav"

    lengths = resample_all(
        [
            (source, copy(kind, part, utt))
            for part, (noisy, clean, _) in parts.items()
            for kind, files in (("noisy", noisy), ("clean", clean))
            for utt, source in files.items()
        ],
        nj,
    )
    train_utts = list(parts["train"][0])
    members = {
        "train": ("train", [u for u in train_utts if speaker_of(u) not in dev_speakers]),
        "dev": ("train", [u for u in train_utts if speaker_of(u) in dev_speakers]),
        "test": ("test", list(parts["test"][0])),
    }
    summary = {}
    for split, (part, utts) in members.items():
        path = out / "noisy" / split
        text = parts[part][2]
        summary[f"noisy/{split}"] = write_split(
            path,
            {u: relative_to_dir(copy("noisy", part, u), path) for u in utts},
            {u: speaker_of(u) for u in utts},
            {u: lengths[copy("noisy", part, u)] / SAMPLE_RATE for u in utts},
            {u: text[u] for u in utts} if all(u in text for u in utts) else None,
            {"clean.scp": {u: relative_to_dir(copy("clean", part, u), path) for u in utts}},
        )
    return summary
