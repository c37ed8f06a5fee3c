"""``speechssl prepare CORPUS``: a downloaded corpus -> Kaldi data dirs, ``speechssl.data.corpora``."""

from __future__ import annotations

import argparse
import time


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def add_parser(subparsers) -> argparse.ArgumentParser:
    prepare = subparsers.add_parser(
        "prepare",
        help="turn a downloaded corpus into data dirs (librispeech, voxceleb1, ...)",
        description="Prepare a real corpus as Kaldi data dirs in the synthetic corpus's layout.",
    )
    sub = prepare.add_subparsers(dest="corpus", required=True, metavar="CORPUS")

    def corpus(name: str, help: str) -> argparse.ArgumentParser:
        aliases = [name.replace("_", "-")] if "_" in name else []
        p = sub.add_parser(name, help=help, aliases=aliases)
        p.set_defaults(corpus=name)
        p.add_argument("--root", required=True, help="the corpus folder as downloaded")
        p.add_argument("--out", required=True, help="where the data dirs go")
        return p

    p = corpus("librispeech", "ASR and PR dirs")
    p.add_argument("--train-subset", default="train-clean-100")
    p.add_argument("--dev-subset", default="dev-clean")
    p.add_argument("--test-subset", default="test-clean")
    p.add_argument(
        "--unlabeled-subsets", type=_names, default=(), help="comma-separated, e.g. train-clean-360"
    )
    p.add_argument("--subsets", type=_names, default=("asr", "phones"), help="asr,phones")
    p.add_argument("--lexicon", help="'WORD PH1 PH2 ...' (default: librispeech-lexicon.txt)")
    p.add_argument("--strip-stress", action="store_true", help="AH0 AH1 -> AH")
    p.add_argument("--lm-text", help="extra LM sentences (e.g. librispeech-lm-norm.txt.gz)")

    p = corpus("speech_commands", "KS dirs (v0.01, 12 classes)")
    p.add_argument("--test-root", help="speech_commands_test_set_v0.01 (default: next to --root)")
    p.add_argument("--silence-dev-fraction", type=float, default=0.1)

    corpus("fluent_speech_commands", "IC dirs")

    p = corpus("voxceleb1", "SID and SV dirs")
    p.add_argument("--subsets", type=_names, default=("sid", "sv"), help="sid,sv")
    p.add_argument("--iden-split", help="default: <root>/iden_split.txt")
    p.add_argument("--trials", help="default: <root>/veri_test2.txt or voxceleb1_test_v2.txt")
    p.add_argument("--sv-dev-speakers", type=int, default=40, help="held out for SV dev trials")
    p.add_argument("--trials-per-utt", type=int, default=4, help="dev trials of each kind")
    p.add_argument("--seed", type=int, default=0)

    p = corpus("iemocap", "ER dirs, 5 leave-one-session-out folds")
    p.add_argument("--dev-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)

    p = corpus("voicebank_demand", "SE dirs (resampled to 16 kHz)")
    p.add_argument("--dev-speakers", type=_names, default=("p226", "p287"))
    p.add_argument("--nj", type=int, default=1, help="parallel resampling processes")
    return prepare


def run(args: argparse.Namespace) -> int:
    from speechssl.data.corpora import PREPARERS, format_summary

    options = {k: v for k, v in vars(args).items() if k not in ("command", "corpus", "run")}
    root, out = options.pop("root"), options.pop("out")
    start = time.time()
    summary = PREPARERS[args.corpus](root, out, **options)
    print(format_summary(summary))
    print(f"prepare {args.corpus}: data dirs in {out} ({time.time() - start:.1f} s)")
    return 0
