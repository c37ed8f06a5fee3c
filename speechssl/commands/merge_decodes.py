"""``speechssl merge-decodes``: one decode dir from the decode dirs of a data dir's shards."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "merge-decodes",
        help="merge the decode dirs of a data dir's shards (text, nbest.jsonl, ctm, logprobs)",
        description="Merge `speechssl asr-decode` outputs of the shards of one data dir "
        "(`speechssl data split`, one decode job each) into one decode dir.",
    )
    p.add_argument("--out", required=True, help="the merged decode dir")
    p.add_argument("shards", nargs="+", help="the shards' decode dirs")
    return p


def run(args: argparse.Namespace) -> int:
    from speechssl.asr.infer import merge_decode_dirs

    merge_decode_dirs(args.shards, args.out)
    print(f"wrote {args.out} from {len(args.shards)} shard(s)")
    return 0
