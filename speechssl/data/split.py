"""Split a data directory into shards and take subsets of it."""

from __future__ import annotations

import os
from pathlib import Path

from speechssl.data.kaldi import DataDir, DataDirError, c_sorted


def subset(
    data: DataDir,
    out: str | os.PathLike,
    utts: list[str] | None = None,
    *,
    speakers: list[str] | None = None,
    first: int | None = None,
    last: int | None = None,
    shortest: int | None = None,
) -> DataDir:
    """Write the utterances selected by exactly one criterion to ``out`` and return it."""
    chosen = [c for c in (utts, speakers, first, last, shortest) if c is not None]
    if len(chosen) != 1:
        raise ValueError("subset: give exactly one of utts, speakers, first, last, shortest")
    all_utts = data.utt_ids
    if utts is not None:
        missing = [u for u in utts if u not in data.utt2spk]
        if missing:
            raise DataDirError(
                f"{data.path}: {len(missing)} requested ids not found: {missing[:5]}"
            )
        keep = set(utts)
    elif speakers is not None:
        keep = {u for u in all_utts if data.utt2spk[u] in set(speakers)}
    elif first is not None:
        keep = set(all_utts[:first])
    elif last is not None:
        keep = set(all_utts[-last:]) if last else set()
    else:
        durs = data.durations()
        if durs is None:
            raise DataDirError(f"{data.path}: --shortest needs utt2dur")
        keep = set(sorted(all_utts, key=lambda u: (durs[u], u.encode()))[:shortest])
    return write_selection(data, keep, out)


def write_selection(data: DataDir, keep: set[str], out: str | os.PathLike) -> DataDir:
    """Write the utterances in ``keep`` (with their recordings and every table) to ``out``."""
    segs = None if data.segments is None else {u: s for u, s in data.segments.items() if u in keep}
    recs = keep if segs is None else {s.recording for s in segs.values()}
    sub = DataDir(
        path=data.path,
        wav_scp={k: v for k, v in data.wav_scp.items() if k in recs},
        utt2spk={u: s for u, s in data.utt2spk.items() if u in keep},
        text=None if data.text is None else {u: t for u, t in data.text.items() if u in keep},
        segments=segs,
        tables={n: {u: v for u, v in t.items() if u in keep} for n, t in data.tables.items()},
    )
    sub.save(out)
    return DataDir.load(out)


def num_shards(data_dir: str | os.PathLike, nj: int) -> int:
    """Shards a data dir is split into for ``nj`` jobs: at least one speaker per shard."""
    return max(1, min(nj, len(DataDir.load(data_dir).spk2utt)))


def split(data: DataDir, num_shards: int, per_utt: bool = False) -> list[Path]:
    """Split into ``<dir>/split<N>/{1..N}``, by speaker unless ``per_utt``.

    Speakers go, largest first, to the shard with the fewest utterances so far (ties to the
    lowest index), which balances shards and is deterministic.
    """
    if num_shards < 1:
        raise ValueError("num_shards must be >= 1")
    units = {u: [u] for u in data.utt_ids} if per_utt else data.spk2utt
    if len(units) < num_shards:
        kind = "utterances" if per_utt else "speakers"
        raise DataDirError(
            f"{data.path}: cannot split {len(units)} {kind} into {num_shards} shards; "
            "use fewer jobs" + ("" if per_utt else " or split per utterance (--per-utt)")
        )
    load = [0] * num_shards
    shards: list[list[str]] = [[] for _ in range(num_shards)]
    for unit in sorted(units, key=lambda k: (-len(units[k]), k.encode())):
        i = min(range(num_shards), key=lambda j: (load[j], j))
        shards[i].extend(units[unit])
        load[i] += len(units[unit])
    root = data.path / f"split{num_shards}{'utt' if per_utt else ''}"
    outs = []
    for i, utts in enumerate(shards, 1):
        out = root / str(i)
        write_selection(data, set(utts), out)
        outs.append(out)
    return outs


def info(data: DataDir) -> dict[str, object]:
    durs = data.durations()
    return {
        "path": str(data.path),
        "utterances": len(data.utt2spk),
        "speakers": len(set(data.utt2spk.values())),
        "recordings": len(data.wav_scp),
        "hours": None if durs is None else round(sum(durs.values()) / 3600, 4),
        "files": c_sorted(
            ["wav.scp", "utt2spk", "spk2utt"]
            + (["text"] if data.text is not None else [])
            + (["segments"] if data.segments is not None else [])
            + list(data.tables)
        ),
    }
