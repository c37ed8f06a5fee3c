"""Kaldi data directories: read/write round trips, validate, fix, split, subset, CLI."""

from __future__ import annotations

import shutil
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speechssl.cli import main
from speechssl.data.kaldi import (
    DataDir,
    DataDirError,
    c_sorted,
    read_table,
    spk2utt_from_utt2spk,
    write_table,
)
from speechssl.data.split import split, subset
from speechssl.data.validate import fix, validate

ids = st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=12)
values = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x85"
    ),
    max_size=30,
).map(lambda s: " ".join(s.split()))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(ids, values, max_size=20))
def test_table_round_trip(tmp_path_factory, table):
    path = tmp_path_factory.mktemp("t") / "text"
    write_table(path, table)
    back = read_table(path)
    assert back == table
    assert list(back) == c_sorted(table)  # written in C order
    assert validate_sorted(path)


def validate_sorted(path: Path) -> bool:
    keys = [line.split()[0].encode() for line in path.read_text().splitlines() if line.strip()]
    return keys == sorted(keys)


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(ids, st.sampled_from(["a", "b", "spk-1", "Z"]), min_size=1, max_size=20))
def test_data_dir_round_trip(tmp_path_factory, utt2spk):
    root = tmp_path_factory.mktemp("d")
    wav_scp = {u: f"wav/{u}.wav" for u in utt2spk}
    text = {u: f"hello {u.lower()}" for u in utt2spk}
    DataDir(
        root, wav_scp, dict(utt2spk), text, tables={"utt2lang": {u: "en" for u in utt2spk}}
    ).save()
    d = DataDir.load(root)
    assert d.wav_scp == wav_scp and d.utt2spk == utt2spk and d.text == text
    assert d.tables["utt2lang"] == {u: "en" for u in utt2spk}
    assert {k: v.split() for k, v in read_table(root / "spk2utt").items()} == spk2utt_from_utt2spk(
        utt2spk
    )


def test_valid_dir_has_no_issues(data_dir):
    assert validate(data_dir) == []


def _issues(path):
    return [str(i) for i in validate(path) if i.severity == "error"]


def test_validate_reports_each_problem_with_file_and_line(data_dir):
    # unsorted text: swap the first two lines
    text = (data_dir / "text").read_text().splitlines()
    text[0], text[1] = text[1], text[0]
    # an utterance in text missing from wav.scp / utt2spk
    text.append("zzz-ghost hello")
    (data_dir / "text").write_text("\n".join(text) + "\n")
    # duplicate id in utt2dur (line 3 repeats line 2's id)
    lines = (data_dir / "utt2dur").read_text().splitlines()
    lines.insert(2, lines[1])
    (data_dir / "utt2dur").write_text("\n".join(lines) + "\n")
    # missing audio for the 5th recording
    missing_utt = sorted(read_table(data_dir / "wav.scp"))[4]
    (data_dir / "wav" / f"{missing_utt}.wav").unlink()
    # a non-UTF-8 (latin-1) byte on line 3 of a label file
    cafe = "caf\xe9"
    utts = sorted(read_table(data_dir / "utt2spk"))
    labels = [f"{u} {cafe if i == 2 else 'ok'}" for i, u in enumerate(utts)]
    (data_dir / "utt2label").write_bytes("\n".join(labels).encode("latin-1") + b"\n")

    issues = _issues(data_dir)
    text_path, dur_path = str(data_dir / "text"), str(data_dir / "utt2dur")

    def has(fragment, where):
        return any(where in i and fragment in i for i in issues)

    assert has("not sorted", f"{text_path}:2"), issues
    assert has("'zzz-ghost' is not in utt2spk", f"{text_path}:{len(text)}"), issues
    assert has("duplicate id", f"{dur_path}:3"), issues
    assert has(f"audio file for '{missing_utt}' not found", f"{data_dir / 'wav.scp'}:5"), issues
    assert has("not valid UTF-8", f"{data_dir / 'utt2label'}:3"), issues
    assert all("[fix:" in i for i in issues)

    report = fix(data_dir)
    assert missing_utt in report.dropped and "zzz-ghost" in report.dropped
    assert _issues(data_dir) == []
    assert (data_dir / ".backup" / "text").read_text().count("zzz-ghost") == 1
    d = DataDir.load(data_dir)
    assert (
        missing_utt not in d.utt2spk and len(d.utt2spk) == 10
    )  # 12 - missing audio - non-UTF-8 label


def test_validate_empty_transcript_and_speaker_prefix_warning(data_dir):
    text = read_table(data_dir / "text")
    first = next(iter(text))
    text[first] = ""
    write_table(data_dir / "text", text)
    utt2spk = read_table(data_dir / "utt2spk")
    utt2spk[first] = "other"
    write_table(data_dir / "utt2spk", utt2spk)
    write_table(data_dir / "spk2utt", spk2utt_from_utt2spk(utt2spk))
    issues = [str(i) for i in validate(data_dir)]
    assert any("empty transcript" in i and f"{data_dir / 'text'}:1" in i for i in issues)
    assert any(
        i.startswith("WARNING") and "do not start with their speaker id" in i for i in issues
    )


def test_read_table_errors_name_file_and_line(tmp_path):
    p = tmp_path / "text"
    p.write_text("a x\nb y\na z\n")
    with pytest.raises(DataDirError, match=r"text:3: duplicate id 'a'"):
        read_table(p)


def test_split_by_speaker_and_subset(data_dir):
    d = DataDir.load(data_dir)
    shards = split(d, 2)
    parts = [DataDir.load(s) for s in shards]
    assert sorted(u for p in parts for u in p.utt2spk) == d.utt_ids
    for p in parts:
        assert validate(p.path) == []  # relative wav paths were rebased and still resolve
    spk_sets = [set(p.utt2spk.values()) for p in parts]
    assert not spk_sets[0] & spk_sets[1]
    with pytest.raises(DataDirError, match="cannot split 3 speakers into 4"):
        split(d, 4)
    assert len(split(d, 4, per_utt=True)) == 4

    sub = subset(d, data_dir.parent / "short", shortest=3)
    durs = d.durations()
    assert sorted(sub.utt2spk) == sorted(sorted(durs, key=durs.get)[:3])
    assert validate(sub.path) == []
    # utt2dur keeps 3 decimals: within 1 ms of the real length
    assert abs(sub.load_audio(sub.utt_ids[0]).shape[0] - durs[sub.utt_ids[0]] * 16000) <= 16


def test_segments(data_dir):
    d = DataDir.load(data_dir)
    rec = d.utt_ids[0]
    (data_dir / "segments").write_text(f"{rec}-a {rec} 0.00 0.10\n{rec}-b {rec} 0.10 0.25\n")
    write_table(data_dir / "utt2spk", {f"{rec}-a": "s", f"{rec}-b": "s"})
    write_table(data_dir / "spk2utt", {"s": f"{rec}-a {rec}-b"})
    for f in ("text", "utt2dur"):
        (data_dir / f).unlink()
    d = DataDir.load(data_dir)
    assert d.load_audio(f"{rec}-b").shape == (2400,)
    assert [i for i in validate(data_dir) if i.severity == "error"] == []


def test_cli_validate_fix_info(data_dir, capsys):
    shutil.copy(data_dir / "text", data_dir / "text.bak")
    (data_dir / "text").write_text((data_dir / "text").read_text() + "aaa-extra hi\n")
    assert main(["data", "validate", str(data_dir)]) == 1
    out = capsys.readouterr().out
    assert "not sorted" in out and "1 warnings" not in out
    assert main(["data", "fix", str(data_dir)]) == 0
    assert main(["data", "validate", str(data_dir)]) == 0
    assert main(["data", "info", str(data_dir)]) == 0
    assert '"utterances": 12' in capsys.readouterr().out
    assert main(["data", "info", str(data_dir / "nope")]) == 1
    assert "not a directory" in capsys.readouterr().err


def test_atomic_write_gives_the_usual_file_mode(tmp_path):
    """Not mkstemp's 0600: other users (a shared cluster) can read data dirs and reports."""
    import os

    from speechssl.data.kaldi import atomic_write_text

    atomic_write_text(tmp_path / "text", "utt1 hello\n")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "text").stat().st_mode & 0o777 == 0o666 & ~mask
