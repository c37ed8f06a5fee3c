"""``speechssl selftrain-report``: the WER table, WRR and plot of a recipes/selftrain.sh exp dir."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "selftrain-report",
        help="self-training results: WER per generation, pseudo-labels, WRR, a plot",
        description="Read a recipes/selftrain.sh exp dir (gen<k>/teachers.txt, gen<k>/pseudo, "
        "gen<k>/student, oracle) and write RESULTS.md, results.json and "
        "wer_per_generation.png into it.",
    )
    p.add_argument("exp", help="the recipe's --exp dir")
    return p


def run(args: argparse.Namespace) -> int:
    from speechssl.asr.selftrain_report import write_report

    print(write_report(args.exp), end="")
    return 0
