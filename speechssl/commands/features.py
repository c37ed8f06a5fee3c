"""``speechssl features compute|merge|cmvn``: fbank/MFCC features as ark/scp, sharded jobs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from speechssl.commands import add_config_options


def add_parser(subparsers) -> argparse.ArgumentParser:
    feats = subparsers.add_parser(
        "features", help="compute | merge | cmvn  fbank/MFCC features as ark/scp, sharded jobs"
    )
    sub = feats.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser(
        "compute", help="job J: features of shard <data>/split<K>/J of each data dir into ark/scp"
    )
    p.add_argument("--job", type=int, default=1, help="this job's index, 1..nj")
    _add_feature_options(p)
    p.set_defaults(action_run=_compute)
    p = sub.add_parser("merge", help="combine the jobs' outputs into <data>/feats.scp")
    _add_feature_options(p)
    p.set_defaults(action_run=_merge)
    p = sub.add_parser("cmvn", help="global and per-speaker CMVN statistics")
    p.add_argument("data", nargs="+", metavar="DATA")
    p.add_argument("--global-only", action="store_true")
    p.set_defaults(action_run=_cmvn)
    return feats


def run(args: argparse.Namespace) -> int:
    return args.action_run(args)


def _add_feature_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="+", metavar="DATA", help="data dirs (already split for nj>1)")
    p.add_argument("--feat-root", required=True, help="features go to <feat-root>/<name>/")
    p.add_argument(
        "--data-root",
        help="names are data dir paths relative to this, '/' -> '_' (default: common parent)",
    )
    p.add_argument("--nj", type=int, default=1, help="number of jobs the dirs were split for")
    p.add_argument("--kind", choices=["fbank", "mfcc"], help="overrides the config's kind")
    add_config_options(p, "egs/synth/conf/fbank.yaml, fields of FeatureConfig")


def _feature_config(args: argparse.Namespace):
    from speechssl.config import load_config
    from speechssl.features import FeatureConfig

    overrides = args.set + ([f"kind={args.kind}"] if args.kind else [])
    return load_config(FeatureConfig, args.config, overrides)


def _targets(args: argparse.Namespace):
    """(data dir, its feature dir, its name, its shard count) for each data dir given."""
    from speechssl.data.split import num_shards
    from speechssl.features.pipeline import feature_name

    root = args.data_root or Path(os.path.commonpath([Path(d).resolve() for d in args.data]))
    for data in args.data:
        name = feature_name(data, root)
        yield Path(data), Path(args.feat_root) / name, name, num_shards(data, args.nj)


def _compute(args: argparse.Namespace) -> int:
    from speechssl.features.pipeline import compute_job

    cfg = _feature_config(args)
    for data, feat_dir, name, shards in _targets(args):
        if args.job <= shards:
            shard = data / f"split{shards}" / str(args.job) if shards > 1 else data
            compute_job(shard, feat_dir, cfg, name, args.job)
    return 0


def _merge(args: argparse.Namespace) -> int:
    from speechssl.features.pipeline import merge_jobs

    cfg = _feature_config(args)
    for data, feat_dir, name, shards in _targets(args):
        merge_jobs(data, feat_dir, cfg, name, shards)
    return 0


def _cmvn(args: argparse.Namespace) -> int:
    from speechssl.features.pipeline import compute_cmvn

    for data in args.data:
        compute_cmvn(data, per_speaker=not args.global_only)
    return 0
