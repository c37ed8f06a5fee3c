"""``speechssl pseudo-label``: teachers' n-best lists -> a filtered, pseudo-labelled data dir."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    from speechssl.asr.pseudo_label import COMBINE

    p = subparsers.add_parser(
        "pseudo-label",
        help="combine teachers' n-best lists, filter, write a pseudo-labelled data dir",
        description="Combine one or more teachers' decodes (nbest.jsonl of `speechssl "
        "asr-decode`) of an unlabeled data dir into pseudo-labels, filter them, and write the "
        "kept utterances as a data dir with text, utt2weight and pseudo_label.json.",
    )
    p.add_argument("--data", required=True, help="the unlabeled data dir the teachers decoded")
    p.add_argument("--teacher", action="append", required=True, metavar="DECODE_DIR",
                   help="a teacher's decode dir with nbest.jsonl (repeat for an ensemble)")  # fmt: skip
    p.add_argument("--out", required=True, help="output data dir")
    p.add_argument("--oracle-text", help="true text of --data, only to report pseudo-label WER")
    p.add_argument("--soft-targets", action="store_true",
                   help="also write soft_targets.pt: the teachers' averaged CTC posteriors")  # fmt: skip
    p.add_argument("--combine", default="fusion", choices=COMBINE)
    p.add_argument("--temperature", type=float, default=1.0, help="of the n-best posteriors")
    p.add_argument("--min-wps", type=float, default=0.5, help="fewest words per second kept")
    p.add_argument("--max-wps", type=float, default=6.0, help="most words per second kept")
    p.add_argument("--loop-ngram", type=int, default=2, help="n-gram size of the loop filter")
    p.add_argument("--loop-count", type=int, default=3, help="repeats that make a loop")
    p.add_argument("--drop-lowest", type=float, default=10.0,
                   help="percent of utterances dropped by lowest confidence")  # fmt: skip
    p.add_argument("--multi-target", type=int, default=1, metavar="N",
                   help="targets per utterance: the label and N-1 n-best alternatives, "
                   "weighted by their posteriors (extra utterances <utt>-nb<k>)")  # fmt: skip
    return p


def run(args: argparse.Namespace) -> int:
    from speechssl.asr.pseudo_label import FilterConfig, PseudoLabelConfig, pseudo_label

    filters = FilterConfig(
        args.min_wps, args.max_wps, args.loop_ngram, args.loop_count, args.drop_lowest
    )
    cfg = PseudoLabelConfig(args.combine, args.temperature, filters, args.multi_target)
    for row in pseudo_label(
        args.data, args.teacher, args.out, cfg, args.oracle_text, args.soft_targets
    ):
        wer = "" if row["wer"] is None else f", pseudo-label WER of the kept {row['wer']:.2f}%"
        print(f"{row['step']:10s} removed {row['removed']:4d}, kept {row['kept']:4d}{wer}")
    if args.multi_target > 1:
        summary = json.loads((Path(args.out) / "pseudo_label.json").read_text())
        added = summary["multi_target"]["added"]
        print(f"multi-target: {added} n-best alternatives added as <utt>-nb<k> utterances")
    print(f"wrote {args.out} (text, utt2weight, pseudo_label.json)")
    return 0
