"""``speechssl lm build|score``: KenLM word n-gram models (lmplz, build_binary)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    lm = subparsers.add_parser(
        "lm", help="build | score  KenLM word n-gram models (lmplz, build_binary)"
    )
    sub = lm.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("build", help="estimate an ARPA n-gram LM with lmplz")
    p.add_argument("--text", required=True, help="normalized text, one sentence per line")
    p.add_argument("--order", type=int, default=3, help="n-gram order (default 3)")
    p.add_argument("--prune", type=int, nargs="+", help="count thresholds per order, e.g. 0 0 1")
    p.add_argument("--binary", action="store_true", help="also write DIR/lm.bin (KenLM trie)")
    p.add_argument(
        "--discount-fallback",
        choices=("auto", "yes", "no"),
        default="auto",
        help="lmplz --discount_fallback: auto retries with it when the text is too small",
    )
    p.add_argument("--memory", default="10%", help="lmplz sorting memory (-S), default 10%%")
    p.add_argument("--out", required=True, help="output folder (writes lm.arpa [lm.bin])")
    p = sub.add_parser("score", help="perplexity and OOV count of a text")
    p.add_argument("--lm", required=True, help="ARPA or KenLM binary file")
    p.add_argument("--text", required=True, help="normalized text, one sentence per line")
    return lm


def run(args: argparse.Namespace) -> int:
    from speechssl.asr.lm import KenLM, build_arpa, build_binary, perplexity

    if args.action == "build":
        fallback = {"auto": None, "yes": True, "no": False}[args.discount_fallback]
        out = Path(args.out)
        arpa = build_arpa(
            args.text, out / "lm.arpa", args.order, args.prune, fallback, memory=args.memory
        )
        print(arpa)
        if args.binary:
            print(build_binary(arpa, out / "lm.bin"))
    else:
        stats = perplexity(KenLM(args.lm), args.text)
        print(
            f"{args.text}: perplexity {stats['perplexity']:.2f} over {stats['words']} words "
            f"+ {stats['sentences']} </s>, {stats['oov']} OOV"
        )
    return 0
