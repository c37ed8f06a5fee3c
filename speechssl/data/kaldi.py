"""Kaldi data directories: the contract between recipe stages.

A data directory holds plain-text tables, one ``<key> <value>`` line each, sorted on the key in
C (byte) order with unique keys:

``wav.scp``         ``<rec> <path>`` or ``<rec> <command> |`` (pipes need an explicit opt-in)
``segments``        ``<utt> <rec> <start-s> <end-s>`` (optional; without it rec == utt)
``text``            ``<utt> <words...>``
``utt2spk``         ``<utt> <spk>``; ``spk2utt`` is derived from it
``utt2dur``         ``<utt> <seconds>``; ``utt2num_frames`` ``<utt> <int>``
``utt2<label>``     any per-utterance label (``utt2phones``, ``utt2keyword``, ``utt2intent`` ...)
``*.scp``           any other per-utterance file map (``feats.scp``, ``clean.scp`` ...)

Relative paths in ``wav.scp`` (and other ``.scp`` files) are resolved against the data directory
itself, so a corpus can be moved as a whole. (Kaldi resolves them against the working directory;
absolute paths behave the same in both.)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechssl.data.audio import load_audio
from speechssl.errors import SpeechSSLError
from speechssl.io import atomic_write_text

# Files with a fixed meaning; anything else matching utt2* or *.scp is a per-utterance table too.
CORE_FILES = ("wav.scp", "segments", "text", "utt2spk", "spk2utt", "utt2dur", "utt2num_frames")


class DataDirError(SpeechSSLError, ValueError):
    """A data directory file is malformed; the message names the file, line and a fix."""


def c_sorted(keys: Iterable[str]) -> list[str]:
    """Sort like ``LC_ALL=C sort``: by UTF-8 bytes."""
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def _split_line(line: str) -> tuple[str, str]:
    parts = line.strip().split(maxsplit=1)
    return parts[0], (parts[1] if len(parts) > 1 else "")


def read_table(path: str | os.PathLike, *, allow_empty_value: bool = True) -> dict[str, str]:
    """Read a ``<key> <value>`` table in file order.

    Raises DataDirError naming file and line for non-UTF-8 bytes, duplicate keys, and (unless
    ``allow_empty_value``) lines with a key but no value.
    """
    path = Path(path)
    table: dict[str, str] = {}
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataDirError(
                    f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start}); "
                    "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
                ) from None
            if not line.strip():
                continue
            key, value = _split_line(line)
            if key in table:
                raise DataDirError(
                    f"{path}:{lineno}: duplicate id '{key}'; ids must be unique "
                    "(run `speechssl data fix` to keep the first occurrence)"
                )
            if not value and not allow_empty_value:
                raise DataDirError(f"{path}:{lineno}: '{key}' has no value")
            table[key] = value
    return table


def format_value(value: str | int | float | Iterable[str]) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, int):
        return str(value)
    return " ".join(str(v) for v in value)


def write_table(path: str | os.PathLike, mapping: Mapping[str, object]) -> None:
    """Write ``mapping`` as a C-sorted ``<key> <value>`` table, atomically.

    Values may be strings, numbers (floats get 3 decimals) or sequences (joined by spaces).
    """
    for key in mapping:
        if not key or any(c.isspace() for c in key):
            raise DataDirError(f"{path}: id {key!r} is empty or contains white space")
    lines = [f"{k} {format_value(mapping[k])}".rstrip() + "\n" for k in c_sorted(mapping)]
    atomic_write_text(path, "".join(lines))


def spk2utt_from_utt2spk(utt2spk: Mapping[str, str]) -> dict[str, list[str]]:
    spk2utt: dict[str, list[str]] = {}
    for utt in c_sorted(utt2spk):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    return spk2utt


def write_data_dir(
    path: str | os.PathLike,
    wav_scp: Mapping[str, str],
    utt2spk: Mapping[str, str],
    text: Mapping[str, str] | None = None,
    extra: Mapping[str, Mapping[str, object]] | None = None,
) -> None:
    """Write a data directory: wav.scp, utt2spk, derived spk2utt, text, and each ``extra`` table
    by file name (e.g. ``{"utt2dur": {...}, "utt2phones": {...}}``). Each file is atomic."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    write_table(path / "wav.scp", wav_scp)
    write_table(path / "utt2spk", utt2spk)
    write_table(path / "spk2utt", spk2utt_from_utt2spk(utt2spk))
    if text is not None:
        write_table(path / "text", text)
    for name, table in (extra or {}).items():
        write_table(path / name, table)


# Tables keyed by speaker rather than utterance (besides spk2utt).
SPEAKER_TABLES = ("cmvn.scp", "spk2gender")


def is_table_file(name: str) -> bool:
    """Files of a data dir that are keyed by utterance (or recording) id, plus spk2utt."""
    if name in SPEAKER_TABLES:
        return False
    return name in CORE_FILES or name.startswith("utt2") or name.endswith(".scp")


@dataclass
class Segment:
    recording: str
    start: float
    end: float


@dataclass
class DataDir:
    """An in-memory data directory. ``tables`` maps every per-utterance file name (besides the
    parsed ones) to its table, e.g. ``tables["utt2phones"]``."""

    path: Path
    wav_scp: dict[str, str]
    utt2spk: dict[str, str]
    text: dict[str, str] | None = None
    segments: dict[str, Segment] | None = None
    tables: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike) -> DataDir:
        path = Path(path)
        if not path.is_dir():
            raise DataDirError(f"{path}: not a directory; expected a Kaldi data dir with wav.scp")
        for required in ("wav.scp", "utt2spk"):
            if not (path / required).is_file():
                raise DataDirError(
                    f"{path}: missing {required}"
                    + (
                        "; create it (utt2spk may map each utterance to itself)"
                        if required == "utt2spk"
                        else ""
                    )
                )
        segments = None
        if (path / "segments").is_file():
            segments = {}
            for utt, value in read_table(path / "segments").items():
                fields = value.split()
                try:
                    rec, start, end = fields[0], float(fields[1]), float(fields[2])
                except (IndexError, ValueError):
                    raise DataDirError(
                        f"{path / 'segments'}: line for '{utt}' should be "
                        f"'<utt> <rec> <start> <end>', found '{utt} {value}'"
                    ) from None
                segments[utt] = Segment(rec, start, end)
        tables = {
            p.name: read_table(p)
            for p in sorted(path.iterdir())
            if p.is_file()
            and is_table_file(p.name)
            and p.name not in ("wav.scp", "utt2spk", "spk2utt", "text", "segments")
        }
        return cls(
            path=path,
            wav_scp=read_table(path / "wav.scp", allow_empty_value=False),
            utt2spk=read_table(path / "utt2spk", allow_empty_value=False),
            text=read_table(path / "text") if (path / "text").is_file() else None,
            segments=segments,
            tables=tables,
        )

    @property
    def utt_ids(self) -> list[str]:
        return c_sorted(self.utt2spk)

    @property
    def spk2utt(self) -> dict[str, list[str]]:
        return spk2utt_from_utt2spk(self.utt2spk)

    def durations(self) -> dict[str, float] | None:
        if "utt2dur" not in self.tables:
            return None
        return {u: float(v) for u, v in self.tables["utt2dur"].items()}

    def audio_source(self, utt: str) -> tuple[str, float, float | None]:
        """(wav.scp entry, start s, end s or None) for an utterance, following ``segments``."""
        if self.segments is not None:
            seg = self.segments.get(utt)
            if seg is None:
                raise DataDirError(f"{self.path}/segments: no entry for utterance '{utt}'")
            entry = self.wav_scp.get(seg.recording)
            if entry is None:
                raise DataDirError(
                    f"{self.path}/wav.scp: recording '{seg.recording}' of utterance '{utt}' "
                    "is missing"
                )
            return entry, seg.start, seg.end
        entry = self.wav_scp.get(utt)
        if entry is None:
            raise DataDirError(f"{self.path}/wav.scp: no entry for utterance '{utt}'")
        return entry, 0.0, None

    def load_audio(self, utt: str, **kwargs) -> np.ndarray:
        """Load one utterance's samples (following segments); kwargs go to ``load_audio``."""
        entry, start, end = self.audio_source(utt)
        return load_audio(self.resolve(entry), utt_id=utt, start=start, end=end, **kwargs)

    def resolve(self, entry: str) -> str:
        """Resolve a wav.scp path entry against the data directory (pipes are returned as-is)."""
        if is_pipe(entry) or os.path.isabs(entry):
            return entry
        return os.path.normpath(self.path / entry)

    def save(self, path: str | os.PathLike | None = None) -> Path:
        out = Path(path) if path is not None else self.path
        wav_scp = self.wav_scp
        extra: dict[str, Mapping[str, object]] = dict(self.tables)
        if out.resolve() != self.path.resolve():
            # keep relative entries pointing at the same files from the new location
            wav_scp = {k: self.rebase(v, out) for k, v in self.wav_scp.items()}
            for name, table in self.tables.items():
                if name.endswith(".scp"):
                    extra[name] = {k: self.rebase(v, out) for k, v in table.items()}
        if self.segments is not None:
            extra["segments"] = {
                u: f"{s.recording} {s.start:.3f} {s.end:.3f}" for u, s in self.segments.items()
            }
        write_data_dir(out, wav_scp, self.utt2spk, self.text, extra)
        return out

    def rebase(self, entry: str, new_dir: str | os.PathLike) -> str:
        """Rewrite a relative scp entry (``path`` or ``path:offset``) so it resolves to the same
        file from ``new_dir``."""
        if is_pipe(entry) or os.path.isabs(entry):
            return entry
        path, sep, offset = entry.rpartition(":")
        if not (sep and offset.isdigit()):
            path, sep, offset = entry, "", ""
        moved = os.path.relpath(self.path.resolve() / path, Path(new_dir).resolve())
        return moved + sep + offset


def is_pipe(entry: str) -> bool:
    return entry.rstrip().endswith("|")
