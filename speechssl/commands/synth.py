"""``speechssl synth``: render the synthetic corpus (:func:`speechssl.data.synth.build_corpus`)."""

from __future__ import annotations

import argparse
import time

from speechssl.commands import comma_separated


def _subsets(text: str) -> list[str]:
    from speechssl.data.synth import SUBSETS

    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = sorted(set(names) - set(SUBSETS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown subsets {unknown}; choose from {','.join(SUBSETS)}"
        )
    return names


def add_parser(subparsers) -> argparse.ArgumentParser:
    from speechssl.data.synth import DEFAULT_SNRS, SUBSETS

    p = subparsers.add_parser(
        "synth",
        help="render the synthetic corpus (espeak-ng, flite) as Kaldi data dirs",
        description="Render the synthetic speech corpus (espeak-ng + flite) as Kaldi data dirs.",
    )
    p.add_argument("--out", required=True, help="output folder (created; reruns resume)")
    p.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    p.add_argument(
        "--scale",
        default="default",
        help="'test', 'default', or hours of ASR training audio (other subsets scale with it)",
    )
    p.add_argument("--nj", type=int, default=2, help="parallel rendering jobs (default 2)")
    p.add_argument("--voices", help="file with one voice id a line (default: the 48 built-in)")
    p.add_argument(
        "--snrs",
        type=comma_separated(float),
        default=list(DEFAULT_SNRS),
        help="comma-separated SNRs in dB for the noisy subset (default 0,5,10,15)",
    )
    p.add_argument(
        "--subsets",
        type=_subsets,
        default=list(SUBSETS),
        help=f"comma-separated, from {','.join(SUBSETS)}",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from speechssl.data.synth import build_corpus, format_summary, read_voices

    start = time.time()
    voices = read_voices(args.voices) if args.voices else None
    summary = build_corpus(
        args.out,
        seed=args.seed,
        scale=args.scale,
        nj=args.nj,
        voices=voices,
        snrs=args.snrs,
        subsets=args.subsets,
    )
    print(format_summary(summary))
    print(f"synth: corpus in {args.out} ({time.time() - start:.1f} s)")
    return 0
