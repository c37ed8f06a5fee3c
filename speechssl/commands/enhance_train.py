"""``speechssl enhance-train``: train an enhancer with one of five regimes
(:mod:`speechssl.enhance.train`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from speechssl.commands import add_config_options


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "enhance-train",
        help="train a speech enhancer: Noise2Noise, Noisy-as-Clean, SURE, Noise2Self, Noise2Clean",
        description="Train a speech enhancement model on a noisy data dir (resumes from "
        "<exp>/checkpoints); writes <exp>/model.pt.",
    )
    add_config_options(p, "egs/synth/conf/enhance/mask.yaml")
    p.add_argument("--data", required=True, help="noisy data dir (wav.scp [+ noisy2.scp ...])")
    p.add_argument("--exp", required=True, help="experiment dir")
    p.add_argument("--regime", help="overrides the config's regime")
    return p


def run(args: argparse.Namespace) -> int:
    from speechssl.config import load_config, save_config
    from speechssl.enhance.train import EnhanceTrainConfig, enhance_train

    overrides = args.set + ([f"regime={args.regime}"] if args.regime else [])
    cfg = load_config(EnhanceTrainConfig, args.config, overrides)
    cfg.check(args.config or "--set")
    save_config(cfg, Path(args.exp) / "config.yaml")
    print(json.dumps(enhance_train(cfg, args.data, args.exp), default=str))
    return 0
