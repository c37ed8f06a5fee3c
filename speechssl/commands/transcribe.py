"""``speechssl transcribe``: audio files, a folder or a wav.scp -> text or JSON lines
(:func:`speechssl.asr.transcribe.iter_transcripts`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from speechssl.commands import add_decoding_options, check_device
from speechssl.errors import SpeechSSLError
from speechssl.io import atomic_write_text


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "transcribe",
        help="transcribe audio files, a folder or a wav.scp (text or JSON)",
        description="Transcribe audio files, folders (recursive) or a Kaldi wav.scp / data dir "
        "with a CTC model: '<id> <text>' lines, or JSON lines with word timestamps.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio file, folder or wav.scp")
    add_decoding_options(p)  # --lm implies beam search
    p.add_argument("--beam", type=int, help="beam search with this beam (default: greedy)")
    p.add_argument("--nbest", type=int, default=1, help="n-best list in JSON (implies beam)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--output", help="write here (atomically) instead of stdout")
    p.add_argument("--window", type=float, default=30.0, help="seconds per window")
    p.add_argument(
        "--overlap", type=float, default=1.0, help="seconds shared by neighbouring windows"
    )
    p.add_argument("--vad", action="store_true", help="split at silences (energy VAD) first")
    p.add_argument("--batch-seconds", type=float, default=120.0, help="audio s per forward pass")
    p.add_argument("--allow-pipes", action="store_true", help="run 'cmd |' wav.scp entries")
    p.add_argument(
        "--greedy",
        action="store_true",
        help="greedy decoding even when --model is an exp dir with dev-tuned beam settings",
    )
    return p


def tuned_settings(model: str) -> tuple[Path, dict] | None:
    """An exp dir's dev-tuned beam search (``decode/dev_beam_lm/decode.json`` of
    recipes/asr.sh: LM, alpha, beta, beam), with the LM path found from the exp dir."""
    path = Path(model) / "decode" / "dev_beam_lm" / "decode.json"
    if not path.is_file():
        return None
    try:
        tuned = json.loads(path.read_text())
        lm = Path(tuned["lm"])
        float(tuned["alpha"]), float(tuned["beta"]), int(tuned["beam"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SpeechSSLError(f"{path}: not a decode.json of asr-decode ({e})") from None
    if not lm.is_file() and "lm" in lm.parts:  # written relative to the recipe's folder
        last = max(i for i, part in enumerate(lm.parts) if part == "lm")
        lm = Path(model).joinpath(*lm.parts[last:])
    if not lm.is_file():
        raise SpeechSSLError(f"{path}: its LM {tuned['lm']} is missing; pass --lm or --greedy")
    return path, {**tuned, "lm": str(lm)}


def run(args: argparse.Namespace) -> int:

    from speechssl.asr.decode import CTCDecoder, DecoderConfig
    from speechssl.asr.model import load_model
    from speechssl.asr.transcribe import TranscribeOptions, VADConfig, iter_transcripts

    if args.nbest < 1 or (args.beam is not None and args.beam < 1):
        raise SpeechSSLError("--nbest and --beam must be >= 1")
    tuned = None if args.greedy or args.lm is not None else tuned_settings(args.model)
    if tuned is not None:  # an exp dir decodes as its dev tuning did, unless told otherwise
        path, settings = tuned
        args.lm, args.alpha, args.beta = settings["lm"], settings["alpha"], settings["beta"]
        args.beam = args.beam or int(settings["beam"])
        print(
            f"transcribe: {path}: beam {args.beam}, LM {args.lm}, alpha {args.alpha:g}, "
            f"beta {args.beta:g} (--greedy or --lm to override)",
            file=sys.stderr,
        )
    beam = args.beam is not None or args.lm is not None or args.nbest > 1
    opts = TranscribeOptions(
        mode="beam" if beam else "greedy",
        window=args.window,
        overlap=args.overlap,
        vad=VADConfig() if args.vad else None,
        batch_seconds=args.batch_seconds,
        nj=args.nj,
    )
    check_device(args.device)
    try:
        model = load_model(args.model, args.device)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        reason = str(e) if args.model in str(e) else f"{args.model}: {e}"
        raise SpeechSSLError(f"--model {reason}") from None
    config = DecoderConfig(
        beam=args.beam or DecoderConfig.beam, alpha=args.alpha, beta=args.beta, nbest=args.nbest
    )
    try:
        decoder = CTCDecoder(model.tokens, args.lm, config)
    except (OSError, ValueError, RuntimeError) as e:
        raise SpeechSSLError(f"--lm {args.lm}: {e}") from None
    preprocess = None
    if args.enhance:
        from speechssl.enhance.infer import load_enhancer

        preprocess = load_enhancer(args.enhance, args.device).enhance_16k
    results = iter_transcripts(model, args.inputs, decoder, opts, args.allow_pipes, preprocess)
    return _write(results, args)


def _write(results, args: argparse.Namespace) -> int:
    """Stream lines to stdout (or collect them for ``--output``); errors go to stderr."""
    from speechssl.asr.transcribe import TranscribeError

    lines, failed = [], 0
    for result in results:
        if isinstance(result, TranscribeError):
            print(f"error: {result.reason}", file=sys.stderr, flush=True)
            failed += 1
            continue
        if args.format == "json":
            line = json.dumps(result.to_json(args.nbest > 1), ensure_ascii=False)
        else:
            line = f"{result.id} {result.text}".rstrip()
        if args.output:
            lines.append(line + "\n")
        else:
            print(line, flush=True)
    if args.output:
        atomic_write_text(args.output, "".join(lines))
    return 1 if failed else 0
