"""``speechssl asr-train``: CTC ASR training on any upstream (``speechssl.asr.train``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from speechssl.commands import add_config_options


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "asr-train",
        help="CTC ASR training on any upstream (tokenizer, SpecAugment, freeze/fine-tune)",
        description="Train a CTC ASR model on any upstream (resumes from <exp>/checkpoints).",
    )
    add_config_options(p, "egs/synth/conf/asr/fbank_blstm.yaml")
    p.add_argument("--data", required=True, help="training data dir (with text)")
    p.add_argument("--valid", help="validation data dir (with text)")
    p.add_argument(
        "--unlabeled",
        help="pseudo-labelled data dir (`speechssl pseudo-label`) to train on with --data "
        "(self-training; data.labeled_ratio, data.pseudo_scale, data.pseudo_confidence)",
    )
    p.add_argument("--exp", required=True, help="experiment dir")
    p.add_argument("--upstream", help="overrides model.upstream (fbank, a checkpoint, HF folder)")
    return p


def run(args: argparse.Namespace) -> int:
    from speechssl.asr.train import ASRTrainConfig, asr_train
    from speechssl.config import load_config, save_config

    overrides = args.set + ([f"model.upstream={args.upstream}"] if args.upstream else [])
    cfg = load_config(ASRTrainConfig, args.config, overrides)
    save_config(cfg, Path(args.exp) / "config.yaml")
    result = asr_train(cfg, args.data, args.exp, args.valid, unlabeled_dir=args.unlabeled)
    print(json.dumps(result, default=str))
    return 0
