"""IEMOCAP -> emotion-recognition data dirs, leave-one-session-out (SUPERB ER).

Read (https://sail.usc.edu/iemocap/, released on request)::

    IEMOCAP_full_release/Session{1..5}/sentences/wav/<dialog>/<utterance>.wav    16 kHz
    IEMOCAP_full_release/Session{1..5}/dialog/EmoEvaluation/<dialog>.txt, one line per turn:
        [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]

Written under ``out`` (as the synthetic corpus's ``prosody/``, one set of dirs per fold)::

    prosody/fold{k}/test     Session k
    prosody/fold{k}/train    the other four sessions, minus dev
    prosody/fold{k}/dev      ``dev_fraction`` of each training speaker's utterances (seeded)

The four SUPERB classes, in the synthetic corpus's names: neu -> neutral, hap and exc ->
happy, ang -> angry, sad -> sad; other labels (fru sur fea dis oth xxx) are dropped. SUPERB's
dev set is a random 20 % of the training sessions; here it is drawn per speaker, so every
training speaker is in dev in proportion. The speaker of ``Ses01F_impro01_M000`` is the male
actor of session 1, ``Ses01M`` (the last field's letter, not the dialog's), and utterance ids
are ``<speaker>-<utterance>``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from speechssl.data.corpora.corpus import (
    CorpusError,
    audio_durations,
    locate_root,
    missing,
    read_text_lines,
    visible,
    write_split,
)
from speechssl.data.kaldi import c_sorted

CORPUS = "IEMOCAP"
URL = "https://sail.usc.edu/iemocap/"
SESSIONS = (1, 2, 3, 4, 5)
EMOTIONS = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"}
_TURN = re.compile(r"^\[(\d+(?:\.\d+)?) - (\d+(?:\.\d+)?)\]\t(Ses0(\d)[FM]_\S+)\t(\w+)\t")


def speaker_of(utterance: str) -> str:
    """``Ses01F_impro01_M000`` -> ``Ses01M``: session, then the gender of the turn's actor."""
    return f"{utterance[:5]}{utterance.rsplit('_', 1)[1][0]}"


def read_session(root: Path, session: int) -> tuple[dict[str, Path], dict[str, str]]:
    """({utt id: wav}, {utt id: emotion}) of one session's turns in the four classes."""
    folder = root / f"Session{session}"
    evaluations = folder / "dialog" / "EmoEvaluation"
    if not evaluations.is_dir():
        raise missing(evaluations, f"the emotion labels of session {session}", CORPUS, URL)
    wavs, emotions = {}, {}
    for path in visible(evaluations, "*.txt"):
        for line in read_text_lines(path):
            if not line.startswith("["):
                continue
            match = _TURN.match(line)
            if not match:
                raise CorpusError(
                    f"{path}: cannot read '{line[:80]}'; expected "
                    "'[start - end]<TAB>utterance<TAB>label<TAB>[v, a, d]'"
                )
            utterance, label = match[3], match[5]
            if label not in EMOTIONS:
                continue
            dialog = utterance.rsplit("_", 1)[0]
            wav = folder / "sentences" / "wav" / dialog / f"{utterance}.wav"
            if not wav.is_file():
                raise CorpusError(
                    f"{path}: labels {utterance}, but {wav} is not there; the release is "
                    f"incomplete, extract it from {URL} again"
                )
            utt = f"{speaker_of(utterance)}-{utterance}"
            wavs[utt], emotions[utt] = wav, EMOTIONS[label]
    if not wavs:
        raise CorpusError(f"{evaluations}: no turn labelled neu, hap, exc, ang or sad")
    return wavs, emotions


def dev_split(utts: list[str], fraction: float, rng: np.random.Generator) -> set[str]:
    """``fraction`` of each speaker's utterances (rounded), drawn with ``rng``."""
    by_speaker: dict[str, list[str]] = {}
    for utt in c_sorted(utts):
        by_speaker.setdefault(utt.split("-")[0], []).append(utt)
    dev = set()
    for speaker in sorted(by_speaker):
        own = by_speaker[speaker]
        picked = rng.choice(len(own), size=int(round(fraction * len(own))), replace=False)
        dev.update(own[i] for i in picked)
    return dev


def prepare_iemocap(
    corpus_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    dev_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, dict[str, object]]:
    """Write ``prosody/fold{1..5}/{train,dev,test}``; returns ``{data dir: {utterances, hours,
    speakers, labels}}``. The dev draw of fold k uses ``default_rng([seed, k])``."""
    if not 0 < dev_fraction < 1:
        raise ValueError(f"dev_fraction must be in (0, 1), got {dev_fraction}")
    root = locate_root(corpus_root, "Session1", CORPUS, URL, wrappers=("IEMOCAP_full_release",))
    sessions = {s: read_session(root, s) for s in SESSIONS}
    wavs = {u: str(p) for s in SESSIONS for u, p in sessions[s][0].items()}
    emotions = {u: e for s in SESSIONS for u, e in sessions[s][1].items()}
    durations = audio_durations(wavs)
    summary = {}
    for fold in SESSIONS:
        test = set(sessions[fold][0])
        rest = [u for s in SESSIONS if s != fold for u in sessions[s][0]]
        dev = dev_split(rest, dev_fraction, np.random.default_rng([seed, fold]))
        parts = {"train": set(rest) - dev, "dev": dev, "test": test}
        for split, utts in parts.items():
            name = f"prosody/fold{fold}/{split}"
            summary[name] = write_split(
                Path(out_dir) / name,
                {u: wavs[u] for u in utts},
                {u: u.split("-")[0] for u in utts},
                durations,
                tables={"utt2emotion": {u: emotions[u] for u in utts}},
            )
    return summary
