#!/usr/bin/env python3
"""Check a SUPERB run against stated margins over chance; one line per upstream and task.

    python tools/superb_margins.py egs/synth/exp/superb

Margins (the test-scale acceptance of the SUPERB issue): KS, IC, SID, ER accuracy at least twice
chance (chance: uniform or the training majority, whichever is higher); PR below 80% PER; ASR at
most 90% WER (an empty transcript scores 100%); SE PESQ above the noisy input's and a positive
SI-SDR improvement; SV EER at most 25% (half of chance). Values are the reported test means
(dev-selected lr). Exit status 1 if any margin is missed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


class MarginError(ValueError):
    """A summary or result file that cannot be read; the message names it."""


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise MarginError(f"{path}: unreadable ({err}); rerun that task's probe") from None


def _selected_runs(task_dir: Path, lr: float) -> list[dict]:
    paths = sorted(task_dir.glob(f"**/lr{lr:.2e}/seed*/result.json"))
    if not paths:
        raise MarginError(f"{task_dir}: no result.json for the reported lr {lr:.2e}")
    return [_read_json(p) for p in paths]


def check(task_dir: Path, summary: dict) -> tuple[str, bool]:
    task, value, chance = summary["task"], summary["mean"], summary["chance"]
    if task in ("ks", "ic", "sid", "er"):
        return f"accuracy {value:.2f} >= 2 x chance {chance:.2f}", value >= 2 * chance
    if task == "pr":
        return f"PER {value:.2f} < 80", value < 80
    if task == "asr":
        return f"WER {value:.2f} <= 90 (empty output: 100)", value <= 90
    if task == "se":
        runs = _selected_runs(task_dir, summary["dev_lr"])
        sdri = statistics.fmean(r["test"]["si_sdri"] for r in runs)
        rule = f"PESQ {value:.3f} > noisy {chance:.3f}, SI-SDR improvement {sdri:+.2f} dB > 0"
        return rule, value > chance and sdri > 0
    if task == "sv":
        return f"EER {value:.2f} <= 25 (chance 50)", value <= 25
    return f"{summary['metric']} {value:.2f} (no margin stated)", True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exp", type=Path, help="the SUPERB exp folder (holds <upstream>/<task>/)")
    args = parser.parse_args(argv)
    summaries = sorted(args.exp.glob("*/*/summary.json"))
    if not summaries:
        print(f"error: no <upstream>/<task>/summary.json under {args.exp}", file=sys.stderr)
        return 1
    missed = 0
    for path in summaries:
        try:
            summary = _read_json(path)
            rule, ok = check(path.parent, summary)
        except MarginError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        except KeyError as err:
            print(f"error: {path}: no {err} field; rerun that task's probe", file=sys.stderr)
            return 1
        missed += not ok
        print(f"{'ok  ' if ok else 'MISS'} {summary['upstream']:<16} {summary['task']:<4} {rule}")
    print(f"{len(summaries) - missed}/{len(summaries)} margins met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
