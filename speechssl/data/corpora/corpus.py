"""What every corpus preparer shares: finding the corpus on disk (with a download hint when a
part is missing), reading audio durations, and writing data dirs, trial lists and text files.

Conventions of the preparers (``speechssl.data.corpora.<corpus>``):

- Output mirrors the synthetic corpus (``speechssl/data/synth/corpus.py``): the same sub-dir
  names and label files per task, so a SUPERB run points ``--data`` at either.
- ``wav.scp`` lists corpus files by absolute path (soundfile reads wav and flac directly, so there
  are no pipes); audio a preparer writes itself (silence clips, resampled copies) lives under
  ``<out>/wav/`` and is listed relative to the data dir, so the output folder can be moved.
- Same input, same options -> byte-identical output; every file is written atomically; a rerun
  rewrites the same files (and skips audio that is already there).
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import soundfile as sf

from speechssl.data.audio import SAMPLE_RATE
from speechssl.data.kaldi import c_sorted, write_data_dir
from speechssl.errors import SpeechSSLError
from speechssl.io import atomic_path, atomic_write_text

# Per-utterance label tables whose class counts go into a split's summary.
LABEL_TABLES = ("utt2keyword", "utt2emotion", "utt2intent")


class CorpusError(SpeechSSLError, RuntimeError):
    """The corpus on disk is missing a part or is malformed; the message names the file or
    folder and says what to download (with its URL) or fix."""


def missing(path: Path, what: str, corpus: str, url: str) -> CorpusError:
    return CorpusError(
        f"{path}: not found ({what}); download {corpus} from {url} and pass the folder that "
        "holds it as --root"
    )


def locate_root(
    root: str | os.PathLike, marker: str, corpus: str, url: str, wrappers: Iterable[str] = ()
) -> Path:
    """The corpus folder: ``root`` itself or ``root/<wrapper>`` (the folder an archive unpacks
    to), whichever contains ``marker``. Returned absolute (not resolved: symlinks stay)."""
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise CorpusError(
            f"{root}: no such folder; download {corpus} from {url} and pass its folder as --root"
        )
    candidates = [root, *(root / w for w in wrappers)]
    for folder in candidates:
        if (folder / marker).exists():
            return folder
    looked = ", ".join(str(c / marker) for c in candidates)
    raise CorpusError(
        f"{root}: not a {corpus} folder ({marker} not found; looked for {looked}); "
        f"download {corpus} from {url} and pass the folder that holds it as --root"
    )


def require(path: Path, what: str, corpus: str, url: str) -> Path:
    if not path.exists():
        raise missing(path, what, corpus, url)
    return path


def visible(folder: Path, pattern: str = "*") -> list[Path]:
    """Entries of ``folder`` matching ``pattern``, sorted, without dot files (archives unpacked
    on macOS carry ``._<name>`` resource forks beside every file)."""
    return sorted(p for p in folder.glob(pattern) if not p.name.startswith("."))


def read_text_lines(path: Path) -> list[str]:
    """Non-empty, stripped lines of a UTF-8 text file; errors name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def audio_durations(
    paths: Mapping[str, str | os.PathLike], sample_rate: int = SAMPLE_RATE
) -> dict[str, float]:
    """utt -> seconds, from the audio headers; every file must be at ``sample_rate``."""
    durations = {}
    for utt, path in paths.items():
        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError) as e:
            raise CorpusError(
                f"{path} (utterance '{utt}'): cannot read the audio header ({e}); the file is "
                "corrupt or truncated, re-extract it from the corpus archive"
            ) from None
        if info.samplerate != sample_rate:
            raise CorpusError(
                f"{path} (utterance '{utt}'): {info.samplerate} Hz, expected {sample_rate} Hz; "
                "is this the original release of the corpus?"
            )
        durations[utt] = info.frames / info.samplerate
    return durations


def write_split(
    path: Path,
    wav_scp: Mapping[str, str],
    utt2spk: Mapping[str, str],
    durations: Mapping[str, float],
    text: Mapping[str, str] | None = None,
    tables: Mapping[str, Mapping[str, object]] | None = None,
) -> dict[str, object]:
    """Write one data dir (wav.scp utt2spk spk2utt [text] utt2dur + ``tables``); return its
    summary: utterances, hours, speakers and, for label tables, the count per class."""
    if not utt2spk:
        raise CorpusError(f"{path}: no utterances to write; check the corpus and the options")
    utt2dur = {u: f"{durations[u]:.4f}" for u in utt2spk}
    write_data_dir(path, wav_scp, utt2spk, text, {"utt2dur": utt2dur, **(tables or {})})
    summary: dict[str, object] = {
        "utterances": len(utt2spk),
        "hours": sum(durations[u] for u in utt2spk) / 3600,
        "speakers": len(set(utt2spk.values())),
    }
    for name in LABEL_TABLES:
        if tables and name in tables:
            counts = Counter(str(v) for v in tables[name].values())
            summary["labels"] = {k: counts[k] for k in c_sorted(counts)}
    return summary


def write_trials(path: Path, trials: Iterable[tuple[str, str, bool]]) -> int:
    """Write a verification trial list in the synthetic corpus's format, one
    ``<enroll-utt> <test-utt> target|nontarget`` line per trial, unique and C-sorted."""
    lines = {f"{a} {b} {'target' if same else 'nontarget'}" for a, b, same in trials}
    atomic_write_text(path, "".join(line + "\n" for line in c_sorted(lines)))
    return len(lines)


def write_lines(path: Path, lines: Iterable[str]) -> int:
    """Stream ``lines`` into ``path`` through a temp file and a rename (for texts too large to
    hold in memory, e.g. the LibriSpeech LM corpus); returns the number of lines."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
            count += 1
    return count


def warn(corpus: str, message: str) -> None:
    print(f"prepare {corpus}: warning: {message}", file=sys.stderr)


def relative_to_dir(file: Path, data_dir: Path) -> str:
    """A wav.scp entry for a file the preparer wrote: relative to the data dir, which
    ``speechssl.data.kaldi`` resolves against the dir itself."""
    return os.path.relpath(file, data_dir)
