"""``speechssl <command>``: one entry point; each command is a thin wrapper over a library call.

Bad input ends in one ``error:`` line naming what is wrong (exit status 1), not a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from speechssl.config import ConfigError, load_config
from speechssl.data.audio import AudioError
from speechssl.data.kaldi import DataDir, DataDirError


def _data_validate(args: argparse.Namespace) -> int:
    from speechssl.data.validate import validate

    issues = validate(args.dir, check_audio=not args.no_audio)
    for issue in issues:
        print(issue)
    errors = sum(i.severity == "error" for i in issues)
    warnings = len(issues) - errors
    print(f"{args.dir}: {errors} errors, {warnings} warnings")
    return 1 if errors else 0


def _data_fix(args: argparse.Namespace) -> int:
    from speechssl.data.validate import fix

    print(fix(args.dir, check_audio=not args.no_audio))
    return 0


def _data_split(args: argparse.Namespace) -> int:
    from speechssl.data.split import split

    for out in split(DataDir.load(args.dir), args.num_shards, per_utt=args.per_utt):
        print(out)
    return 0


def _read_list(path: str) -> list[str]:
    return [line.split()[0] for line in Path(path).read_text().splitlines() if line.strip()]


def _data_subset(args: argparse.Namespace) -> int:
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


def _data_info(args: argparse.Namespace) -> int:
    from speechssl.data.split import info

    print(json.dumps(info(DataDir.load(args.dir)), indent=2))
    return 0


def _feature_config(args: argparse.Namespace):
    from speechssl.features import FeatureConfig

    overrides = list(args.set or [])
    if args.kind:
        overrides.append(f"kind={args.kind}")
    return load_config(FeatureConfig, args.config, overrides)


def _features_compute(args: argparse.Namespace) -> int:
    from speechssl.features.pipeline import compute_job

    compute_job(args.data, args.feat_dir, _feature_config(args), args.name, args.job)
    return 0


def _features_merge(args: argparse.Namespace) -> int:
    from speechssl.features.pipeline import merge_jobs

    merge_jobs(args.data, args.feat_dir, _feature_config(args), args.name, args.nj)
    return 0


def _features_cmvn(args: argparse.Namespace) -> int:
    from speechssl.features.pipeline import compute_cmvn

    compute_cmvn(args.data, per_speaker=not args.global_only)
    return 0


def _synth(args: argparse.Namespace) -> int:
    from speechssl.data.synth.__main__ import main as synth_main

    return synth_main(args.synth_args)


def _add_feature_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="FeatureConfig YAML (e.g. egs/synth/conf/fbank.yaml)")
    p.add_argument("--kind", choices=["fbank", "mfcc"], help="overrides the config's kind")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field")
    p.add_argument("--name", required=True, help="name for the ark/scp files, e.g. train_fbank")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speechssl",
        description="Speech self-supervised learning toolkit. Commands:\n"
        "  data       validate | fix | split | subset | info  Kaldi data directories\n"
        "  synth      render the embedded synthetic corpus (espeak-ng, flite)\n"
        "  features   compute | merge | cmvn  fbank/MFCC features as ark/scp",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="validate, fix, split, subset, describe data dirs")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = dsub.add_parser("validate", help="report problems, naming file and line")
    p.add_argument("dir")
    p.add_argument("--no-audio", action="store_true", help="skip checking audio files exist")
    p.set_defaults(func=_data_validate)
    p = dsub.add_parser("fix", help="sort, de-duplicate, drop inconsistent utterances")
    p.add_argument("dir")
    p.add_argument("--no-audio", action="store_true", help="keep utterances with missing audio")
    p.set_defaults(func=_data_fix)
    p = dsub.add_parser("split", help="split into <dir>/split<N>/{1..N} by speaker")
    p.add_argument("dir")
    p.add_argument("num_shards", type=int)
    p.add_argument("--per-utt", action="store_true", help="split by utterance, not speaker")
    p.set_defaults(func=_data_split)
    p = dsub.add_parser("subset", help="write a subset of a data dir")
    p.add_argument("dir")
    p.add_argument("out")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--utt-list", help="file whose first column lists utterance ids")
    group.add_argument("--spk-list", help="file whose first column lists speaker ids")
    group.add_argument("--first", type=int)
    group.add_argument("--last", type=int)
    group.add_argument("--shortest", type=int, help="the N shortest (needs utt2dur)")
    p.set_defaults(func=_data_subset)
    p = dsub.add_parser("info", help="counts, hours, files")
    p.add_argument("dir")
    p.set_defaults(func=_data_info)

    p = sub.add_parser(
        "synth", help="render the synthetic corpus (--help for options)", add_help=False
    )
    p.add_argument("synth_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_synth)

    feats = sub.add_parser("features", help="compute fbank/MFCC features and CMVN stats")
    fsub = feats.add_subparsers(dest="features_command", required=True, metavar="ACTION")
    p = fsub.add_parser("compute", help="features of one data dir (shard) into ark/scp")
    p.add_argument("data")
    p.add_argument("feat_dir")
    p.add_argument("--job", default="1", help="job index used in file names")
    _add_feature_options(p)
    p.set_defaults(func=_features_compute)
    p = fsub.add_parser("merge", help="combine job outputs into <data>/feats.scp")
    p.add_argument("data")
    p.add_argument("feat_dir")
    p.add_argument("--nj", type=int, required=True)
    _add_feature_options(p)
    p.set_defaults(func=_features_merge)
    p = fsub.add_parser("cmvn", help="global and per-speaker CMVN statistics")
    p.add_argument("data")
    p.add_argument("--global-only", action="store_true")
    p.set_defaults(func=_features_cmvn)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataDirError, AudioError, ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
