"""``speechssl kmeans fit|dump|merge``: HuBERT's k-means frame labels (MFCC or a layer)."""

from __future__ import annotations

import argparse
from dataclasses import fields


def add_parser(subparsers) -> argparse.ArgumentParser:
    from speechssl.kmeans import KmeansConfig

    p = subparsers.add_parser(
        "kmeans", help="fit | dump | merge  k-means frame labels for HuBERT (MFCC or a layer)"
    )
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    fit = sub.add_parser("fit", help="fit k-means on a sample of a data dir")
    fit.add_argument("data_dir")
    fit.add_argument("km_dir")
    for f in fields(KmeansConfig):
        kind = int if "int" in f.type else float if "float" in f.type else str
        fit.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)
    dump = sub.add_parser("dump", help="dump labels of (a shard of) a data dir")
    dump.add_argument("data_dir")
    dump.add_argument("km_dir")
    dump.add_argument("label_dir")
    dump.add_argument("--name", default=None, help="label set name (default: data dir name)")
    dump.add_argument("--job", type=int, default=1)
    dump.add_argument("--nj", type=int, default=1)
    dump.add_argument("--device", default=None, help="where the upstream runs (cpu, cuda)")
    merge = sub.add_parser("merge", help="join the shards of a sharded dump")
    merge.add_argument("km_dir")
    merge.add_argument("label_dir")
    merge.add_argument("--name", required=True)
    merge.add_argument("--nj", type=int, required=True)
    return p


def run(args: argparse.Namespace) -> int:
    from speechssl.config import from_dict
    from speechssl.kmeans import KmeansConfig, dump_labels, fit_kmeans, merge_labels

    if args.action == "fit":
        values = {f.name: getattr(args, f.name) for f in fields(KmeansConfig)}
        fit_kmeans(args.data_dir, args.km_dir, from_dict(KmeansConfig, values, "kmeans fit"))
    elif args.action == "dump":
        dump_labels(
            args.data_dir, args.km_dir, args.label_dir, args.name, args.job, args.nj,
            device=args.device,
        )  # fmt: skip
    else:
        merge_labels(args.label_dir, args.name, args.nj, args.km_dir)
    return 0
