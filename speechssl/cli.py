"""``speechssl <command>``: one entry point; each command is a thin wrapper over a library call.

Bad input ends in one ``error:`` line naming what is wrong (exit status 1), not a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from speechssl.config import ConfigError, load_config
from speechssl.data.audio import AudioError
from speechssl.data.kaldi import DataDir, DataDirError


def _data_validate(args: argparse.Namespace) -> int:
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


def _data_fix(args: argparse.Namespace) -> int:
    from speechssl.data.validate import fix

    print(fix(args.dir, check_audio=not args.no_audio))
    return 0


def _data_split(args: argparse.Namespace) -> int:
    from speechssl.data.split import num_shards, split

    for path in args.dirs:
        shards = args.num_shards if args.per_utt else num_shards(path, args.num_shards)
        if shards > 1:
            for out in split(DataDir.load(path), shards, per_utt=args.per_utt):
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


def _feature_targets(args: argparse.Namespace):
    """(data dir, its feature dir, its name, its shard count) for each data dir given."""
    from speechssl.data.split import num_shards
    from speechssl.features.pipeline import feature_name

    root = args.data_root or Path(os.path.commonpath([Path(d).resolve() for d in args.data]))
    for data in args.data:
        name = feature_name(data, root)
        yield Path(data), Path(args.feat_root) / name, name, num_shards(data, args.nj)


def _features_compute(args: argparse.Namespace) -> int:
    from speechssl.features.pipeline import compute_job

    cfg = _feature_config(args)
    for data, feat_dir, name, shards in _feature_targets(args):
        if args.job <= shards:
            shard = data / f"split{shards}" / str(args.job) if shards > 1 else data
            compute_job(shard, feat_dir, cfg, name, args.job)
    return 0


def _features_merge(args: argparse.Namespace) -> int:
    from speechssl.features.pipeline import merge_jobs

    cfg = _feature_config(args)
    for data, feat_dir, name, shards in _feature_targets(args):
        merge_jobs(data, feat_dir, cfg, name, shards)
    return 0


def _features_cmvn(args: argparse.Namespace) -> int:
    from speechssl.features.pipeline import compute_cmvn

    for data in args.data:
        compute_cmvn(data, per_speaker=not args.global_only)
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from speechssl.config import save_config
    from speechssl.ssl.pretrain import PretrainConfig, pretrain

    overrides = list(args.set or [])
    if args.method:
        overrides.append(f"method={args.method}")
    cfg = load_config(PretrainConfig, args.config, overrides)
    save_config(cfg, Path(args.exp) / "config.yaml")
    result = pretrain(cfg, args.data, args.exp, args.valid, args.labels, args.valid_labels)
    print(json.dumps(result, default=str))
    return 0


def _export(args: argparse.Namespace) -> int:
    from speechssl.ssl.pretrain import export

    print(export(args.checkpoint, args.out))
    return 0


def _add_feature_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="+", metavar="DATA", help="data dirs (already split for nj>1)")
    p.add_argument("--feat-root", required=True, help="features go to <feat-root>/<name>/")
    p.add_argument(
        "--data-root",
        help="names are data dir paths relative to this, '/' -> '_' (default: common parent)",
    )
    p.add_argument("--nj", type=int, default=1, help="number of jobs the dirs were split for")
    p.add_argument("--config", help="FeatureConfig YAML (e.g. egs/synth/conf/fbank.yaml)")
    p.add_argument("--kind", choices=["fbank", "mfcc"], help="overrides the config's kind")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speechssl",
        description="Speech self-supervised learning toolkit. Commands:\n"
        "  data       validate | fix | split | subset | info  Kaldi data directories\n"
        "  synth      render the embedded synthetic corpus (espeak-ng, flite)\n"
        "  features   compute | merge | cmvn  fbank/MFCC features as ark/scp, sharded jobs\n"
        "  kmeans     fit | dump | merge  k-means frame labels for HuBERT (MFCC or a layer)\n"
        "  pretrain   SSL pretraining of a registered method with the one Trainer\n"
        "  export     the inference-only upstream of a training checkpoint\n"
        "  asr-train  CTC ASR training on any upstream (tokenizer, SpecAugment, freeze/fine-tune)\n"
        "  asr-decode decode a data dir: greedy / beam + KenLM, n-best rescoring, scoring\n"
        "  lm         build | score  KenLM word n-gram models (lmplz, build_binary)\n"
        "  transcribe transcribe audio files, a folder or a wav.scp (text or JSON)\n"
        "  superb     SUPERB-style probes of an upstream on eight tasks, results table\n"
        "  prepare    turn a downloaded corpus into data dirs (librispeech, voxceleb1, ...)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="validate, fix, split, subset, describe data dirs")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = dsub.add_parser("validate", help="report problems, naming file and line")
    p.add_argument("dirs", nargs="+", metavar="DIR")
    p.add_argument("--no-audio", action="store_true", help="skip checking audio files exist")
    p.set_defaults(func=_data_validate)
    p = dsub.add_parser("fix", help="sort, de-duplicate, drop inconsistent utterances")
    p.add_argument("dir")
    p.add_argument("--no-audio", action="store_true", help="keep utterances with missing audio")
    p.set_defaults(func=_data_fix)
    p = dsub.add_parser(
        "split", help="split into <dir>/split<N>/{1..N} by speaker (N capped at #speakers)"
    )
    p.add_argument("dirs", nargs="+", metavar="DIR")
    p.add_argument("-n", "--num-shards", type=int, required=True)
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
    p.add_argument("synth_args", nargs=argparse.REMAINDER)  # handled by DELEGATED

    feats = sub.add_parser("features", help="compute fbank/MFCC features and CMVN stats")
    fsub = feats.add_subparsers(dest="features_command", required=True, metavar="ACTION")
    p = fsub.add_parser(
        "compute", help="job J: features of shard <data>/split<K>/J of each data dir into ark/scp"
    )
    p.add_argument("--job", type=int, default=1, help="this job's index, 1..nj")
    _add_feature_options(p)
    p.set_defaults(func=_features_compute)
    p = fsub.add_parser("merge", help="combine the jobs' outputs into <data>/feats.scp")
    _add_feature_options(p)
    p.set_defaults(func=_features_merge)
    p = fsub.add_parser("cmvn", help="global and per-speaker CMVN statistics")
    p.add_argument("data", nargs="+", metavar="DATA")
    p.add_argument("--global-only", action="store_true")
    p.set_defaults(func=_features_cmvn)

    p = sub.add_parser("pretrain", help="SSL pretraining (wav2vec2, hubert, data2vec, ...)")
    p.add_argument("--config", help="pretraining YAML (e.g. egs/synth/conf/ssl/wav2vec2_tiny.yaml)")
    p.add_argument("--method", help="overrides the config's method")
    p.add_argument("--data", required=True, help="training data dir")
    p.add_argument("--valid", help="validation data dir")
    p.add_argument("--labels", help="frame label file for the training set (HuBERT)")
    p.add_argument("--valid-labels", help="frame label file for the validation set")
    p.add_argument("--exp", required=True, help="experiment dir (checkpoints, logs); resumes")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. trainer.max_updates=100 model.num_layers=2",
    )
    p.set_defaults(func=_pretrain)

    p = sub.add_parser(
        "kmeans", help="HuBERT targets: fit | dump | merge (--help for options)", add_help=False
    )
    p.add_argument("kmeans_args", nargs=argparse.REMAINDER)  # handled by DELEGATED

    p = sub.add_parser("export", help="write the inference-only upstream of a checkpoint")
    p.add_argument("checkpoint", help="training checkpoint (e.g. exp/ssl/x/checkpoints/last.pt)")
    p.add_argument("out", help="upstream file to write (e.g. exp/ssl/x/upstream.pt)")
    p.set_defaults(func=_export)
    return parser


# Commands with their own argument parsers (argparse's REMAINDER drops a leading --help).
DELEGATED = {
    "synth": "speechssl.data.synth.cli",
    "kmeans": "speechssl.ssl.kmeans",
    "asr-train": "speechssl.asr.train",
    "asr-decode": "speechssl.asr.infer",
    "lm": "speechssl.asr.lm",
    "transcribe": "speechssl.asr.transcribe",
    "superb": "speechssl.superb.runner",
    "prepare": "speechssl.data.corpora",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:
        import importlib

        try:
            return importlib.import_module(DELEGATED[argv[0]]).main(argv[1:])
        except (DataDirError, AudioError, ConfigError, FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataDirError, AudioError, ConfigError, FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
