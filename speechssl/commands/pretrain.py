"""``speechssl pretrain``: SSL pretraining of a registered method with the one Trainer."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from speechssl.commands import add_config_options


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("pretrain", help="SSL pretraining (wav2vec2, hubert, data2vec, ...)")
    add_config_options(p, "egs/synth/conf/ssl/wav2vec2_tiny.yaml")
    p.add_argument("--method", help="overrides the config's method")
    p.add_argument("--data", required=True, help="training data dir")
    p.add_argument("--valid", help="validation data dir")
    p.add_argument("--labels", help="frame label file for the training set (HuBERT)")
    p.add_argument("--valid-labels", help="frame label file for the validation set")
    p.add_argument("--exp", required=True, help="experiment dir (checkpoints, logs); resumes")
    usage = p.format_help
    p.format_help = lambda: usage() + _methods()  # the registry imports torch: only for --help
    return p


def _methods() -> str:
    from speechssl.ssl import available_methods, get_method

    rows = [f"  {name:<10} presets: {', '.join(get_method(name).presets)}" for name in
            available_methods()]  # fmt: skip
    return (
        "\nregistered methods (--method, config 'method'; --set preset=NAME):\n"
        + "\n".join(rows)
        + "\n"
    )


def run(args: argparse.Namespace) -> int:
    from speechssl.config import save_config
    from speechssl.ssl.pretrain import load_pretrain_config, pretrain

    overrides = args.set + ([f"method={args.method}"] if args.method else [])
    cfg = load_pretrain_config(args.config, overrides)
    save_config(cfg, Path(args.exp) / "config.yaml")
    result = pretrain(cfg, args.data, args.exp, args.valid, args.labels, args.valid_labels)
    print(json.dumps(result, default=str))
    return 0
