"""``speechssl data validate|fix|split|subset|hide-text|info``: Kaldi data directories."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    data = subparsers.add_parser(
        "data", help="validate | fix | split | subset | hide-text | info  data dirs"
    )
    sub = data.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("validate", help="report problems, naming file and line")
    p.add_argument("dirs", nargs="+", metavar="DIR")
    p.add_argument("--no-audio", action="store_true", help="skip checking audio files exist")
    p.set_defaults(action_run=_validate)
    p = sub.add_parser("fix", help="sort, de-duplicate, drop inconsistent utterances")
    p.add_argument("dir")
    p.add_argument("--no-audio", action="store_true", help="keep utterances with missing audio")
    p.set_defaults(action_run=_fix)
    p = sub.add_parser(
        "split", help="split into <dir>/split<N>/{1..N} by speaker (N capped at #speakers)"
    )
    p.add_argument("dirs", nargs="+", metavar="DIR")
    p.add_argument("-n", "--num-shards", type=int, required=True)
    p.add_argument("--per-utt", action="store_true", help="split by utterance, not speaker")
    p.set_defaults(action_run=_split)
    p = sub.add_parser("subset", help="write a subset of a data dir")
    p.add_argument("dir")
    p.add_argument("out")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--utt-list", help="file whose first column lists utterance ids")
    group.add_argument("--spk-list", help="file whose first column lists speaker ids")
    group.add_argument("--first", type=int)
    group.add_argument("--last", type=int)
    group.add_argument("--shortest", type=int, help="the N shortest (needs utt2dur)")
    p.set_defaults(action_run=_subset)
    p = sub.add_parser(
        "hide-text",
        help="copy a data dir without its text, the text kept aside (self-training's oracle)",
    )
    p.add_argument("dir")
    p.add_argument("out", help="the copy: every file but text")
    p.add_argument("oracle", help="where the text goes (outside any data dir)")
    p.set_defaults(action_run=_hide_text)
    p = sub.add_parser("info", help="counts, hours, files")
    p.add_argument("dir")
    p.set_defaults(action_run=_info)
    return data


def run(args: argparse.Namespace) -> int:
    return args.action_run(args)


def _validate(args: argparse.Namespace) -> int:
    from speechssl.data.validate import validate

    failed = 0
    for path in args.dirs:
        issues = validate(path, check_audio=not args.no_audio)
        for issue in issues:
            print(issue)
        errors = sum(i.severity == "error" for i in issues)
        print(f"{path}: {errors} errors, {len(issues) - errors} warnings")
        failed += errors > 0
    return 1 if failed else 0


def _fix(args: argparse.Namespace) -> int:
    from speechssl.data.validate import fix

    print(fix(args.dir, check_audio=not args.no_audio))
    return 0


def _split(args: argparse.Namespace) -> int:
    from speechssl.data.kaldi import DataDir
    from speechssl.data.split import num_shards, split

    for path in args.dirs:
        shards = args.num_shards if args.per_utt else num_shards(path, args.num_shards)
        if shards > 1:
            for out in split(DataDir.load(path), shards, per_utt=args.per_utt):
                print(out)
    return 0


def _read_list(path: str) -> list[str]:
    return [line.split()[0] for line in Path(path).read_text().splitlines() if line.strip()]


def _subset(args: argparse.Namespace) -> int:
    from speechssl.data.kaldi import DataDir
    from speechssl.data.split import subset

    sub = subset(
        DataDir.load(args.dir),
        args.out,
        utts=_read_list(args.utt_list) if args.utt_list else None,
        speakers=_read_list(args.spk_list) if args.spk_list else None,
        first=args.first,
        last=args.last,
        shortest=args.shortest,
    )
    print(f"{args.out}: {len(sub.utt2spk)} utterances")
    return 0


def _hide_text(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from speechssl.data.kaldi import DataDir, DataDirError, write_table
    from speechssl.data.split import write_selection

    data = DataDir.load(args.dir)
    if not data.text:
        raise DataDirError(f"{args.dir}: no text to hide")
    if Path(args.oracle).resolve().parent == Path(args.out).resolve():
        raise DataDirError(f"{args.oracle}: the oracle text must lie outside {args.out}")
    write_selection(replace(data, text=None), set(data.utt_ids), args.out)
    Path(args.oracle).parent.mkdir(parents=True, exist_ok=True)
    write_table(args.oracle, data.text)
    print(f"{args.out}: {len(data.utt_ids)} utterances, no text; the text is in {args.oracle}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from speechssl.data.kaldi import DataDir
    from speechssl.data.split import info

    print(json.dumps(info(DataDir.load(args.dir)), indent=2))
    return 0
