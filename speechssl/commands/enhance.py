"""``speechssl enhance``: enhance audio files, folders, a wav.scp, or a whole data dir
(:mod:`speechssl.enhance.infer`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechssl.errors import SpeechSSLError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "enhance",
        help="enhance audio files, folders or a wav.scp (same length, rate, channels)",
        description="Enhance audio with a trained enhancer. Files keep their length, sample "
        "rate, channels and sample format; each goes to <out-dir>/<id>.<ext> and "
        "<out-dir>/wav.scp lists them. --data-dir mode writes a data dir of enhanced 16 kHz "
        "audio with the source's tables (text, utt2spk ...).",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="audio file, folder or wav.scp")
    p.add_argument("--model", required=True, help="enhancer (model.pt or exp dir)")
    p.add_argument("--out-dir", required=True, help="where the enhanced audio goes")
    p.add_argument("--data-dir", help="enhance this Kaldi data dir into --out-dir (a data dir)")
    p.add_argument("--allow-pipes", action="store_true", help="run 'cmd |' wav.scp entries")
    p.add_argument("--device", default="cpu")
    return p


def run(args: argparse.Namespace) -> int:
    from speechssl.data.kaldi import write_table
    from speechssl.enhance.infer import enhance_data_dir, enhance_file, load_enhancer

    if bool(args.inputs) == bool(args.data_dir):
        raise SpeechSSLError("give INPUT files/folders/wav.scp, or --data-dir (not both)")
    enhancer = load_enhancer(args.model, args.device)
    out = Path(args.out_dir)
    if args.data_dir:
        _, errors = enhance_data_dir(enhancer, args.data_dir, out, args.allow_pipes)
        for utt, reason in errors.items():
            print(f"error: utterance '{utt}': {reason}", file=sys.stderr)
        print(f"{out}: enhanced data dir ({len(errors)} utterance(s) failed)")
        return 1 if errors else 0
    from speechssl.asr.transcribe import TranscribeError, collect_inputs

    written, failed = {}, 0
    for item in collect_inputs(args.inputs):
        if isinstance(item, TranscribeError):
            print(f"error: {item.reason}", file=sys.stderr)
            failed += 1
            continue
        try:
            if item.source.rstrip().endswith("|") or item.start or item.end is not None:
                raise SpeechSSLError("a pipe or segment: enhance its data dir with --data-dir")
            suffix = Path(item.source).suffix.lower() or ".wav"
            target = out / f"{item.id}{suffix}"
            enhance_file(enhancer, item.source, target)
            written[item.id] = str(target)
        except (SpeechSSLError, OSError) as e:
            reason = str(e) if item.source in str(e) else f"{item.source}: {e}"
            print(f"error: {reason}", file=sys.stderr)
            failed += 1
    if written:
        write_table(out / "wav.scp", written)
    print(f"{out}: {len(written)} enhanced, {failed} failed")
    return 1 if failed else 0
