#!/usr/bin/env python3
"""Summarise SSL pretraining runs: one markdown row per experiment dir.

    python tools/pretrain_summary.py --data egs/synth/data/asr/dev egs/synth/exp/ssl/*_tiny

For each dir (``exp/ssl/<method>_<size>``; HuBERT's last ``iter<i>``): updates, the mean
training loss over the first and the last 10% of updates and the drop between them, the last
10%'s mean of the method's accuracy stat (wav2vec 2.0 ``accuracy``, CPC ``acc_1``, with
chance), and — on the utterances of ``--data`` through the exported ``upstream.pt`` — the
variance of the last hidden state over valid frames, averaged over dimensions, beside the
input's (layer 0's). A collapsed model maps every frame to one vector: its variance goes to 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from speechssl.data.dataset import AudioDataset, collate
from speechssl.nn.conv_encoder import length_mask
from speechssl.upstream import load_upstream


def run_dir(exp: Path) -> Path:
    """The dir holding train_log.jsonl and upstream.pt (HuBERT: the last iteration)."""
    iters = sorted(exp.glob("iter*"), key=lambda p: int(p.name[4:]) if p.name[4:].isdigit() else 0)
    return iters[-1] if iters else exp


def loss_summary(log_file: Path) -> dict[str, float]:
    records = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
    train = [r for r in records if "loss" in r]
    if not train:
        raise ValueError(f"{log_file}: no training records")
    n = max(1, len(train) // 10)
    first = sum(r["loss"] for r in train[:n]) / n
    last = sum(r["loss"] for r in train[-n:]) / n
    out = {"updates": float(train[-1]["num_updates"]), "first": first, "last": last}
    for key in ("accuracy", "acc_1"):
        if key in train[-1]:
            out[key] = sum(r[key] for r in train[-n:]) / n
    return out


@torch.no_grad()
def output_variance(upstream_file: Path, data: Path, max_utts: int) -> tuple[float, float]:
    """Mean over dims of the variance over valid frames: (input layer, last layer)."""
    upstream = load_upstream(upstream_file).eval()
    dataset = AudioDataset(data, crop=None)
    items = [dataset[i] for i in range(min(max_utts, len(dataset)))]
    first, last = [], []
    for k in range(0, len(items), 8):
        batch = collate(items[k : k + 8])
        out = upstream(batch.wavs, batch.lengths)
        valid = length_mask(out.lengths, out.hidden_states[0].shape[1])
        first.append(out.hidden_states[0][valid])
        last.append(out.hidden_states[-1][valid])
    return float(torch.cat(first).var(0).mean()), float(torch.cat(last).var(0).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("exp_dirs", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="data dir for the variances")
    parser.add_argument("--max-utts", type=int, default=48)
    args = parser.parse_args(argv)
    print(
        "| run | updates | loss first 10% | last 10% | drop | accuracy (last 10%) "
        "| var. layer 0 | var. last layer |"
    )
    print("|---|---|---|---|---|---|---|---|")
    status = 0
    for exp in args.exp_dirs:
        d = run_dir(exp)
        try:
            s = loss_summary(d / "train_log.jsonl")
            v0, v1 = output_variance(d / "upstream.pt", args.data, args.max_utts)
        except (OSError, ValueError) as err:
            print(f"error: {exp}: {err}", file=sys.stderr)
            status = 1
            continue
        acc = next((f"{s[k]:.3f} ({k})" for k in ("accuracy", "acc_1") if k in s), "-")
        drop = 100 * (1 - s["last"] / s["first"])
        print(
            f"| {exp.name} | {s['updates']:.0f} | {s['first']:.3f} | {s['last']:.3f} | "
            f"{drop:.1f}% | {acc} | {v0:.3g} | {v1:.3g} |"
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
