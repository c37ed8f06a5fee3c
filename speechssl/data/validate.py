"""Validate and repair Kaldi data directories.

``validate`` reads every table leniently and reports each problem with the file, the line and
what to do; ``fix`` repairs what can be repaired (order, duplicates, inconsistent ids, empty
transcripts, missing audio) after backing the originals up to ``.backup/``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from speechssl.data.kaldi import (
    DataDir,
    c_sorted,
    is_pipe,
    is_table_file,
    spk2utt_from_utt2spk,
    write_table,
)


@dataclass(frozen=True)
class Issue:
    severity: str  # "error" or "warning"
    file: str
    line: int | None
    message: str
    fix: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        tail = f" [fix: {self.fix}]" if self.fix else ""
        return f"{self.severity.upper()}: {where}: {self.message}{tail}"


@dataclass
class _Row:
    line: int
    key: str
    value: str


FIX_HINT = "run `speechssl data fix <dir>`"


def scan_table(path: Path, issues: list[Issue]) -> list[_Row]:
    """Read a table without stopping at the first problem; record non-UTF-8 lines as issues."""
    rows = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                issues.append(
                    Issue(
                        "error",
                        str(path),
                        lineno,
                        f"not valid UTF-8 (byte {e.start}: {raw[e.start : e.start + 1]!r})",
                        "re-encode the file as UTF-8, or " + FIX_HINT + " to drop the line",
                    )
                )
                continue
            if not line.strip():
                continue
            parts = line.strip().split(maxsplit=1)
            rows.append(_Row(lineno, parts[0], parts[1] if len(parts) > 1 else ""))
    return rows


def _check_order_and_dups(path: Path, rows: list[_Row], issues: list[Issue]) -> None:
    seen: dict[str, int] = {}
    unsorted_reported = False
    prev: _Row | None = None
    for row in rows:
        if row.key in seen:
            issues.append(
                Issue(
                    "error",
                    str(path),
                    row.line,
                    f"duplicate id '{row.key}' (first at line {seen[row.key]})",
                    FIX_HINT + " (keeps the first)",
                )
            )
        else:
            seen[row.key] = row.line
        if prev is not None and not unsorted_reported and row.key.encode() < prev.key.encode():
            issues.append(
                Issue(
                    "error",
                    str(path),
                    row.line,
                    f"not sorted: '{row.key}' comes after '{prev.key}' (line {prev.line}) but "
                    "sorts before it in C (byte) order",
                    FIX_HINT + " or `LC_ALL=C sort -k1,1 -u`",
                )
            )
            unsorted_reported = True
        prev = row


def _table_files(path: Path) -> list[Path]:
    return [p for p in sorted(path.iterdir()) if p.is_file() and is_table_file(p.name)]


def validate(path: str | os.PathLike, check_audio: bool = True) -> list[Issue]:
    """Return every problem found in the data directory (empty list: valid)."""
    path = Path(path)
    issues: list[Issue] = []
    if not path.is_dir():
        return [Issue("error", str(path), None, "not a directory")]
    for required in ("wav.scp", "utt2spk"):
        if not (path / required).is_file():
            issues.append(Issue("error", str(path / required), None, "missing required file"))
    if issues:
        return issues

    tables: dict[str, list[_Row]] = {}
    for file in _table_files(path):
        rows = scan_table(file, issues)
        tables[file.name] = rows
        _check_order_and_dups(file, rows, issues)
        if file.name != "spk2utt":
            for row in rows:
                if not row.value:
                    what = "empty transcript" if file.name == "text" else "no value"
                    issues.append(
                        Issue("error", str(file), row.line, f"'{row.key}': {what}", FIX_HINT)
                    )

    utt2spk = {r.key: r.value for r in tables["utt2spk"]}
    utts = set(utt2spk)
    has_segments = "segments" in tables
    recordings = {r.key for r in tables["wav.scp"]}
    audio_keys = {r.key for r in tables["segments"]} if has_segments else recordings

    for utt in c_sorted(utts - audio_keys):
        issues.append(
            Issue(
                "error",
                str(path / ("segments" if has_segments else "wav.scp")),
                None,
                f"utterance '{utt}' (from utt2spk) has no entry",
                FIX_HINT,
            )
        )
    for name, rows in tables.items():
        if name in ("utt2spk", "spk2utt") or (name == "wav.scp" and has_segments):
            continue
        for row in rows:
            if row.key not in utts:
                issues.append(
                    Issue(
                        "error",
                        str(path / name),
                        row.line,
                        f"utterance '{row.key}' is not in utt2spk",
                        FIX_HINT + " (drops it)",
                    )
                )
    if has_segments:
        for row in tables["segments"]:
            fields = row.value.split()
            ok = len(fields) == 3
            try:
                ok = ok and 0 <= float(fields[1]) < float(fields[2])
            except ValueError:
                ok = False
            if not ok:
                issues.append(
                    Issue(
                        "error",
                        str(path / "segments"),
                        row.line,
                        "expected '<rec> <start> <end>' with 0 <= start < end",
                    )
                )
            elif fields[0] not in recordings:
                issues.append(
                    Issue(
                        "error",
                        str(path / "segments"),
                        row.line,
                        f"recording '{fields[0]}' is not in wav.scp",
                        FIX_HINT,
                    )
                )
    _check_spk2utt(path, tables, utt2spk, issues)
    _check_speaker_prefix(path, tables["utt2spk"], issues)
    if check_audio:
        for row in tables["wav.scp"]:
            if is_pipe(row.value):
                issues.append(
                    Issue(
                        "warning",
                        str(path / "wav.scp"),
                        row.line,
                        f"the entry of '{row.key}' is a shell pipe: it runs a command, so it is "
                        "read only with an explicit opt-in (--allow-pipes)",
                        "convert the audio to files, or pass --allow-pipes where offered",
                    )
                )
                continue
            if not row.value:
                continue
            audio = row.value if os.path.isabs(row.value) else path / row.value
            if not os.path.isfile(audio):
                issues.append(
                    Issue(
                        "error",
                        str(path / "wav.scp"),
                        row.line,
                        f"audio file for '{row.key}' not found: {audio}",
                        "fix the path, or " + FIX_HINT + " to drop the utterance",
                    )
                )
    return issues


def _check_spk2utt(path: Path, tables, utt2spk: dict[str, str], issues: list[Issue]) -> None:
    if "spk2utt" not in tables:
        issues.append(
            Issue(
                "warning", str(path / "spk2utt"), None, "missing (derived from utt2spk)", FIX_HINT
            )
        )
        return
    found = {r.key: r.value.split() for r in tables["spk2utt"]}
    expected = spk2utt_from_utt2spk(utt2spk)
    if found != expected:
        issues.append(
            Issue(
                "error",
                str(path / "spk2utt"),
                None,
                "does not match utt2spk",
                FIX_HINT + " (regenerates it)",
            )
        )


def _check_speaker_prefix(path: Path, rows: list[_Row], issues: list[Issue]) -> None:
    bad = [r for r in rows if r.value and not r.key.startswith(r.value)]
    if bad and len(bad) < len(rows):
        r = bad[0]
        issues.append(
            Issue(
                "warning",
                str(path / "utt2spk"),
                r.line,
                f"{len(bad)} utterance ids do not start with their speaker id (first: '{r.key}' "
                f"of '{r.value}'); per-speaker sorting may differ from utterance sorting",
                "prefix utterance ids with '<spk>-'",
            )
        )


@dataclass
class FixReport:
    dropped: dict[str, str]  # utt -> reason
    rewritten: list[str]

    def __str__(self) -> str:
        lines = [f"rewrote {len(self.rewritten)} files: {' '.join(self.rewritten)}"]
        lines.append(f"dropped {len(self.dropped)} utterances")
        lines += [f"  {u}: {why}" for u, why in sorted(self.dropped.items())]
        return "\n".join(lines)


def fix(path: str | os.PathLike, check_audio: bool = True) -> FixReport:
    """Repair a data directory in place: keep the first of duplicate ids, drop undecodable lines,
    utterances missing from any per-utterance table, empty transcripts and missing audio; sort
    every table; regenerate spk2utt. Originals are copied to ``<dir>/.backup/`` first."""
    path = Path(path)
    issues: list[Issue] = []
    tables: dict[str, dict[str, str]] = {}
    for file in _table_files(path):
        first: dict[str, str] = {}
        for row in scan_table(file, issues):
            first.setdefault(row.key, row.value)
        tables[file.name] = first
    if "wav.scp" not in tables or "utt2spk" not in tables:
        raise FileNotFoundError(f"{path}: needs wav.scp and utt2spk to be fixable")

    backup = path / ".backup"
    backup.mkdir(exist_ok=True)
    for name in tables:
        shutil.copy2(path / name, backup / name)

    dropped: dict[str, str] = {}
    utts = {u for u, s in tables["utt2spk"].items() if s}
    dropped.update({u: "no speaker in utt2spk" for u, s in tables["utt2spk"].items() if not s})
    has_segments = "segments" in tables
    per_utt = [n for n in tables if n not in ("spk2utt",) and not (has_segments and n == "wav.scp")]
    for name in per_utt:
        for utt in list(utts):
            if utt not in tables[name]:
                utts.discard(utt)
                dropped[utt] = f"missing from {name}"
    if "text" in tables:
        for utt in list(utts):
            if not tables["text"][utt].strip():
                utts.discard(utt)
                dropped[utt] = "empty transcript"
    if check_audio and not has_segments:
        for utt in list(utts):
            entry = tables["wav.scp"][utt]
            audio = entry if os.path.isabs(entry) else path / entry
            if not is_pipe(entry) and not os.path.isfile(audio):
                utts.discard(utt)
                dropped[utt] = f"audio not found: {audio}"
    for name, table in tables.items():
        for key in table:
            if name not in ("spk2utt", "wav.scp") and key not in utts and key not in dropped:
                dropped[key] = f"only in {name}"

    keep_recs = {tables["segments"][u].split()[0] for u in utts} if has_segments else utts
    rewritten = []
    for name, table in tables.items():
        if name == "spk2utt":
            continue
        keys = keep_recs if (name == "wav.scp") else utts
        write_table(path / name, {k: v for k, v in table.items() if k in keys})
        rewritten.append(name)
    utt2spk = {u: tables["utt2spk"][u] for u in utts}
    write_table(path / "spk2utt", spk2utt_from_utt2spk(utt2spk))
    rewritten.append("spk2utt")
    DataDir.load(path)  # raises if anything is still unreadable
    return FixReport(dropped, sorted(rewritten))
