"""``speechssl export``: the inference-only upstream of a training checkpoint."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("export", help="write the inference-only upstream of a checkpoint")
    p.add_argument("checkpoint", help="training checkpoint (e.g. exp/ssl/x/checkpoints/last.pt)")
    p.add_argument("out", help="upstream file to write (e.g. exp/ssl/x/upstream.pt)")
    return p


def run(args: argparse.Namespace) -> int:
    from speechssl.upstream import export_checkpoint

    print(export_checkpoint(args.checkpoint, args.out))
    return 0
