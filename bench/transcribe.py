"""Real-time factor of ``speechssl transcribe`` (processing seconds / audio seconds, and
RTFx = 1 / RTF) on a data dir, per model and decoding, with a fixed number of torch threads.

    python bench/transcribe.py --model egs/synth/exp/asr/fbank --model egs/synth/exp/asr/ssl \\
        [--lm egs/synth/exp/asr/lm/3gram.bin] [--data egs/synth/data/asr/test] [--threads 2]

Each (model, decoding) row transcribes the whole data dir ``--repeats`` times after a warm-up on
its first utterance and keeps the fastest run; wall seconds cover reading the audio, the forward
passes and decoding (model loading excluded). Decodings: ``greedy``, ``beam`` (no LM) and ``beam+lm`` (needs ``--lm``). The WER is
printed when the data dir has a ``text`` file. The table is Markdown, for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from speechssl.asr.decode import CTCDecoder, DecoderConfig  # noqa: E402
from speechssl.asr.model import load_model  # noqa: E402
from speechssl.asr.score import score_texts  # noqa: E402
from speechssl.asr.transcribe import (  # noqa: E402
    TranscribeError,
    collect_inputs,
    transcribe_files,
)
from speechssl.data.kaldi import read_table  # noqa: E402

DECODINGS = ("greedy", "beam", "beam+lm")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return (
        f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, Python {platform.python_version()}"
    )


def measure(model_path: str, decoding: str, args: argparse.Namespace) -> dict:
    model = load_model(model_path, args.device)
    config = DecoderConfig(beam=args.beam, alpha=args.alpha, beta=args.beta)
    decoder = CTCDecoder(model.tokens, args.lm if decoding == "beam+lm" else None, config)
    mode = "greedy" if decoding == "greedy" else "beam"
    inputs = collect_inputs([args.data])
    options = {"window": args.window, "mode": mode, "batch_seconds": args.batch_seconds}
    transcribe_files(model, inputs[:1], decoder, **options)  # warm-up: kernels, LM pages
    walls = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        results = transcribe_files(model, inputs, decoder, **options)
        walls.append(time.perf_counter() - start)
    wall = min(walls)  # the least disturbed run on a shared machine
    failed = [r for r in results if isinstance(r, TranscribeError)]
    for r in failed:
        print(f"error: {r.reason}", file=sys.stderr)
    done = [r for r in results if not isinstance(r, TranscribeError)]
    audio = sum(r.duration for r in done)
    row = {
        "model": model_path,
        "params": sum(p.numel() for p in model.parameters()),
        "decoding": decoding,
        "utts": len(done),
        "audio_s": audio,
        "wall_s": wall,
        "rtf": wall / audio,
        "wer": None,
    }
    text = Path(args.data) / "text"
    if text.is_file():
        refs = read_table(text)
        summary, _ = score_texts(refs, {r.id: r.text for r in done})
        row["wer"] = summary.wer
    return row


def print_table(rows: list[dict]) -> None:
    print("| model | params | decoding | utts | audio s | wall s | RTF | RTFx | WER % |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        wer = "-" if r["wer"] is None else f"{r['wer']:.2f}"
        print(
            f"| {r['model']} | {r['params'] / 1e6:.2f} M | {r['decoding']} | {r['utts']} "
            f"| {r['audio_s']:.1f} | {r['wall_s']:.2f} | {r['rtf']:.4f} | {1 / r['rtf']:.1f} "
            f"| {wer} |"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True, help="ASR model (repeatable)")
    p.add_argument("--data", default=str(ROOT / "egs/synth/data/asr/test"), help="data dir")
    p.add_argument("--lm", help="KenLM for the beam+lm decoding")
    p.add_argument("--decodings", default="greedy,beam+lm", help=f"comma list of {DECODINGS}")
    p.add_argument("--beam", type=int, default=DecoderConfig.beam)
    p.add_argument("--alpha", type=float, default=DecoderConfig.alpha)
    p.add_argument("--beta", type=float, default=DecoderConfig.beta)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--repeats", type=int, default=3, help="runs per row; the fastest counts")
    p.add_argument("--window", type=float, default=30.0)
    p.add_argument("--batch-seconds", type=float, default=120.0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    if not (Path(args.data) / "wav.scp").is_file():
        print(
            f"error: {args.data}: no wav.scp; render the synthetic corpus first "
            "(bash egs/synth/run.sh --stop-stage 1) or pass --data",
            file=sys.stderr,
        )
        return 1
    decodings = [d.strip() for d in args.decodings.split(",") if d.strip()]
    unknown = sorted(set(decodings) - set(DECODINGS))
    if unknown:
        print(f"error: --decodings: unknown {unknown}; choose from {DECODINGS}", file=sys.stderr)
        return 1
    if "beam+lm" in decodings and not args.lm:
        print("note: no --lm given, skipping the beam+lm decoding", file=sys.stderr)
        decodings.remove("beam+lm")
    torch.set_num_threads(args.threads)
    rows = [measure(m, d, args) for m in args.model for d in decodings]
    print(f"data: {args.data}")
    print(f"machine: {machine()}")
    extra = f", LM {args.lm} alpha {args.alpha} beta {args.beta}" if args.lm else ""
    print(f"decoding: beam {args.beam}{extra}; window {args.window} s; best of {args.repeats}\n")
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
