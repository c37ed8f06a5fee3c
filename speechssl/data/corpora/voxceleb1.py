"""VoxCeleb1 -> speaker identification and verification data dirs (SUPERB SID and SV).

Read (https://www.robots.ox.ac.uk/~vgg/data/voxceleb/vox1.html; the split lists from
https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/)::

    <root>/wav/<speaker id1xxxx>/<youtube id>/<nnnnn>.wav    16 kHz (dev and test merged, or
        vox1_dev_wav/wav/... and vox1_test_wav/wav/... as the two archives unpack)
    <root>/iden_split.txt     "<1|2|3> id10001/1zcIwhmdeo4/00001.wav": SID train / dev / test
    <root>/veri_test2.txt     "<1|0> <enroll wav> <test wav>": the cleaned test trial list
                              (also named voxceleb1_test_v2.txt)

Written under ``out`` (as the synthetic corpus's ``speakers/``)::

    speakers/sid_{train,dev,test}   iden_split.txt; the label is utt2spk (1,251 speakers)
    speakers/sv_train               the speakers not in the test trials, minus sv_dev's
    speakers/sv_dev  + trials       ``sv_dev_speakers`` speakers drawn (seeded) from those,
                                    with generated trials
    speakers/sv_test + trials       the official trial list's utterances and trials

SUPERB picks the SV checkpoint by its EER on the test trials (there is no dev set). Here the dev
trials come from held-out training speakers, so model selection never sees a test speaker. For
each dev utterance as enrollment, ``trials_per_utt`` target trials (same speaker, another video
when the speaker has one: same-video pairs share the channel and are too easy) and as many
nontarget trials are drawn. Trials are ``<enroll-utt> <test-utt> target|nontarget`` lines.
Utterance ids are ``<speaker>-<youtube id>-<nnnnn>``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from speechssl.data.corpora.corpus import (
    CorpusError,
    audio_durations,
    locate_root,
    read_text_lines,
    warn,
    write_split,
    write_trials,
)
from speechssl.data.kaldi import c_sorted

CORPUS = "VoxCeleb1"
URL = "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/vox1.html"
META_URL = "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/"
WAV_DIRS = ("wav", "vox1_dev_wav/wav", "vox1_test_wav/wav")
TRIAL_LISTS = ("veri_test2.txt", "voxceleb1_test_v2.txt")
SID_SPLITS = {"1": "train", "2": "dev", "3": "test"}


def utt_id(relpath: str) -> str:
    """``id10001/1zcIwhmdeo4/00001.wav`` -> ``id10001-1zcIwhmdeo4-00001``."""
    return relpath.removesuffix(".wav").replace("/", "-")


class Inventory:
    """Every ``<speaker>/<video>/<nnnnn>.wav`` under the corpus's wav folders."""

    def __init__(self, root: Path):
        folders = [root / d for d in WAV_DIRS if (root / d).is_dir()]
        self.paths: dict[str, Path] = {}  # relative path -> file
        for folder in folders:
            for wav in sorted(folder.glob("id*/*/*.wav")):
                self.paths.setdefault(wav.relative_to(folder).as_posix(), wav)
        if not self.paths:
            raise CorpusError(
                f"{root}: no <speaker>/<video>/<nnnnn>.wav files under {' or '.join(WAV_DIRS)}; "
                f"download and extract the VoxCeleb1 dev and test audio ({URL})"
            )

    def path(self, relpath: str, source: Path, lineno: int) -> Path:
        if relpath not in self.paths:
            raise CorpusError(
                f"{source}:{lineno}: {relpath} is not under the wav folders; the audio is "
                f"incomplete (both the dev and the test archives are needed, {URL})"
            )
        return self.paths[relpath]


def _list_file(root: Path, given: str | os.PathLike | None, names: tuple[str, ...]) -> Path:
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise CorpusError(f"{path}: not found; download it from {META_URL}")
        return path
    for name in names:
        if (root / name).is_file():
            return root / name
    raise CorpusError(
        f"{root / names[0]}: not found; download {names[0]} from {META_URL} into {root} "
        "(or pass its path as an option)"
    )


def read_iden_split(path: Path, audio: Inventory) -> dict[str, dict[str, Path]]:
    """``{"train"|"dev"|"test": {utt: wav}}`` from iden_split.txt."""
    splits: dict[str, dict[str, Path]] = {s: {} for s in SID_SPLITS.values()}
    for lineno, line in enumerate(read_text_lines(path), 1):
        fields = line.split()
        if len(fields) != 2 or fields[0] not in SID_SPLITS:
            raise CorpusError(
                f"{path}:{lineno}: expected '<1|2|3> id10001/<video>/<nnnnn>.wav', found '{line}'"
            )
        splits[SID_SPLITS[fields[0]]][utt_id(fields[1])] = audio.path(fields[1], path, lineno)
    return splits


def read_trials(path: Path, audio: Inventory) -> tuple[list, dict[str, Path]]:
    """(trials as (enroll utt, test utt, is target), {utt: wav}) from an official trial list."""
    trials, wavs = [], {}
    for lineno, line in enumerate(read_text_lines(path), 1):
        fields = line.split()
        if len(fields) != 3 or fields[0] not in ("0", "1"):
            raise CorpusError(
                f"{path}:{lineno}: expected '<1|0> <enroll wav> <test wav>', found '{line}'"
            )
        for rel in fields[1:]:
            wavs[utt_id(rel)] = audio.path(rel, path, lineno)
        trials.append((utt_id(fields[1]), utt_id(fields[2]), fields[0] == "1"))
    return trials, wavs


def draw_trials(utt2spk: dict[str, str], per_utt: int, rng: np.random.Generator) -> list:
    """For each utterance as enrollment, up to ``per_utt`` target trials (another video of the
    speaker if there is one) and ``per_utt`` nontarget trials, drawn with ``rng``."""
    utts = c_sorted(utt2spk)
    by_speaker: dict[str, list[str]] = {}
    for utt in utts:
        by_speaker.setdefault(utt2spk[utt], []).append(utt)
    video = {u: u.split("-")[1:-1] for u in utts}
    trials = []
    for utt in utts:
        speaker = utt2spk[utt]
        same = [u for u in by_speaker[speaker] if u != utt]
        same = [u for u in same if video[u] != video[utt]] or same
        for i in rng.choice(len(same), size=min(per_utt, len(same)), replace=False):
            trials.append((utt, same[i], True))
        n_other = min(per_utt, len(utts) - len(by_speaker[speaker]))
        others: set[str] = set()
        while len(others) < n_other:
            candidate = utts[int(rng.integers(len(utts)))]
            if utt2spk[candidate] != speaker:
                others.add(candidate)
        trials.extend((utt, other, False) for other in c_sorted(others))
    return trials


def prepare_voxceleb1(
    corpus_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    subsets: tuple[str, ...] = ("sid", "sv"),
    iden_split: str | os.PathLike | None = None,
    trials: str | os.PathLike | None = None,
    sv_dev_speakers: int = 40,
    trials_per_utt: int = 4,
    seed: int = 0,
) -> dict[str, dict[str, object]]:
    """Write ``speakers/sid_*`` and/or ``speakers/sv_*``; returns ``{data dir: {utterances,
    hours, speakers[, trials]}}``. ``iden_split`` and ``trials`` default to the lists in the
    corpus folder."""
    unknown = sorted(set(subsets) - {"sid", "sv"})
    if unknown:
        raise ValueError(f"unknown subsets {unknown}; choose from sid, sv")
    root = _locate(corpus_root)
    audio = Inventory(root)
    out = Path(out_dir) / "speakers"
    dirs: dict[str, tuple[dict[str, Path], list | None]] = {}
    if "sid" in subsets:
        split = read_iden_split(_list_file(root, iden_split, ("iden_split.txt",)), audio)
        dirs |= {f"sid_{name}": (wavs, None) for name, wavs in split.items()}
    if "sv" in subsets:
        dirs |= _sv_dirs(root, audio, trials, sv_dev_speakers, trials_per_utt, seed)
    needed = {u: p for wavs, _ in dirs.values() for u, p in wavs.items()}
    durations = audio_durations(needed)
    summary = {}
    for name, (wavs, dir_trials) in dirs.items():
        utt2spk = {u: u.split("-")[0] for u in wavs}
        wav_scp = {u: str(p) for u, p in wavs.items()}
        summary[f"speakers/{name}"] = write_split(out / name, wav_scp, utt2spk, durations)
        if dir_trials is not None:
            summary[f"speakers/{name}"]["trials"] = write_trials(out / name / "trials", dir_trials)
    return summary


def _locate(corpus_root: str | os.PathLike) -> Path:
    """The folder holding wav/ (or vox1_dev_wav/, vox1_test_wav/): the root or root/voxceleb1."""
    root = locate_root(corpus_root, ".", CORPUS, URL)
    for folder in (root, root / "voxceleb1", root / "vox1"):
        if any((folder / d).is_dir() for d in WAV_DIRS):
            return folder
    raise CorpusError(
        f"{root}: not a {CORPUS} folder (none of {', '.join(WAV_DIRS)} in it or in its voxceleb1/ "
        f"or vox1/ sub-folder); download and extract the dev and test audio from {URL}"
    )


def _sv_dirs(
    root: Path,
    audio: Inventory,
    trials: str | os.PathLike | None,
    n_dev: int,
    per_utt: int,
    seed: int,
) -> dict[str, tuple[dict[str, Path], list | None]]:
    """sv_train, sv_dev (held-out speakers, drawn trials) and sv_test (the official trials):
    ``{name: ({utt: wav}, trials or None)}``."""
    trial_path = _list_file(root, trials, TRIAL_LISTS)
    test_trials, test_wavs = read_trials(trial_path, audio)
    test_speakers = {u.split("-")[0] for u in test_wavs}
    pool = sorted({rel.split("/")[0] for rel in audio.paths} - test_speakers)
    if not 0 < n_dev < len(pool):
        raise CorpusError(
            f"sv_dev_speakers={n_dev}: must be between 1 and {len(pool) - 1} (the {len(pool)} "
            "speakers outside the test trials are split into sv_train and sv_dev)"
        )
    rng = np.random.default_rng(seed)
    held = {pool[i] for i in rng.choice(len(pool), size=n_dev, replace=False)}
    training_speakers = set(pool)
    train = {utt_id(r): p for r, p in audio.paths.items() if r.split("/")[0] in training_speakers}
    dev = {u: p for u, p in train.items() if u.split("-")[0] in held}
    train = {u: p for u, p in train.items() if u not in dev}
    unused = len(audio.paths) - len(train) - len(dev) - len(test_wavs)
    if unused:
        warn("voxceleb1", f"{unused} test-speaker utterances are in no trial of {trial_path}")
    dev_trials = draw_trials({u: u.split("-")[0] for u in dev}, per_utt, rng)
    return {
        "sv_train": (train, None),
        "sv_dev": (dev, dev_trials),
        "sv_test": (test_wavs, test_trials),
    }
