"""``speechssl enhance-eval``: PESQ, STOI and SI-SDR of an enhancer on a data dir with clean
references, per SNR and noise family (:func:`speechssl.enhance.evaluate.evaluate`)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "enhance-eval",
        help="score an enhancer (PESQ, STOI, SI-SDR) on a data dir with clean.scp",
        description="Enhance a data dir's noisy audio and score it against clean.scp: means "
        "overall, per utt2snr and per utt2noise, and a spectrogram PNG.",
    )
    p.add_argument("--model", help="enhancer (model.pt or exp dir)")
    p.add_argument("--data", help="data dir with wav.scp (noisy) and clean.scp")
    p.add_argument("--out", help="folder for scores.jsonl, summary.{json,md}, png")
    p.add_argument(
        "--report",
        metavar="EXP",
        help="instead: write EXP/RESULTS.md from recipes/enhance.sh's scores in EXP",
    )
    p.add_argument("--extra-noise", help="add this noise family to every input (e.g. hum)")
    p.add_argument("--extra-snr", type=float, default=5.0, help="its SNR against the noisy input")
    p.add_argument("--label", default="", help="name of this row in the reports")
    p.add_argument("--nj", type=int, default=1, help="processes for the metrics")
    p.add_argument("--pictures", type=int, default=3, help="utterances in spectrograms.png")
    p.add_argument("--device", default="cpu")
    return p


def run(args: argparse.Namespace) -> int:
    from speechssl.enhance.evaluate import evaluate, write_results
    from speechssl.enhance.infer import load_enhancer
    from speechssl.errors import SpeechSSLError

    if args.report:
        print(write_results(args.report))
        return 0
    if not (args.model and args.data and args.out):
        raise SpeechSSLError("--model, --data and --out are needed (or --report EXP)")
    summary = evaluate(
        load_enhancer(args.model, args.device), args.data, args.out, args.extra_noise,
        args.extra_snr, nj=args.nj, pictures=args.pictures, label=args.label,
    )  # fmt: skip
    m = summary["all"]
    print(
        f"{args.out}: {m['utterances']} utts  PESQ {m['pesq_noisy']:.2f} -> {m['pesq']:.2f}  "
        f"STOI {m['stoi_noisy']:.3f} -> {m['stoi']:.3f}  SI-SDR {m['si_sdr_noisy']:.2f} -> "
        f"{m['si_sdr']:.2f} dB (SI-SDRi {m['si_sdri']:+.2f})"
    )
    return 0
