"""``python -m speechssl.data.synth`` (and ``speechssl synth``): build the synthetic corpus."""

from __future__ import annotations

import argparse
import sys
import time

from speechssl.data.synth.corpus import DEFAULT_SNRS, SUBSETS, build_corpus, format_summary
from speechssl.data.synth.synthesizer import SynthesisError
from speechssl.data.synth.voices import VoiceError, read_voices


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, found {text!r}"
        ) from None


def _subsets(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = sorted(set(names) - set(SUBSETS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown subsets {unknown}; choose from {','.join(SUBSETS)}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m speechssl.data.synth",
        description="Render the synthetic speech corpus (espeak-ng + flite) as Kaldi data dirs.",
    )
    parser.add_argument("--out", required=True, help="output folder (created; reruns resume)")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    parser.add_argument(
        "--scale",
        default="default",
        help="'test', 'default', or hours of ASR training audio (other subsets scale with it)",
    )
    parser.add_argument("--nj", type=int, default=2, help="parallel rendering jobs (default 2)")
    parser.add_argument("--voices", help="file with one voice id a line (default: the 48 built-in)")
    parser.add_argument(
        "--snrs",
        type=_floats,
        default=list(DEFAULT_SNRS),
        help="comma-separated SNRs in dB for the noisy subset (default 0,5,10,15)",
    )
    parser.add_argument(
        "--subsets",
        type=_subsets,
        default=list(SUBSETS),
        help=f"comma-separated, from {','.join(SUBSETS)}",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.time()
    try:
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
    except (SynthesisError, VoiceError, ValueError, OSError) as e:
        print(f"synth: error: {e}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    print(f"synth: corpus in {args.out} ({time.time() - start:.1f} s)")
    return 0
