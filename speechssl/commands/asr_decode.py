"""``speechssl asr-decode``: decode a data dir (:func:`speechssl.asr.infer.decode_data_dir`)."""

from __future__ import annotations

import argparse

from speechssl.commands import add_decoding_options, check_device, comma_separated


def add_parser(subparsers) -> argparse.ArgumentParser:
    from speechssl.asr.decode import DecoderConfig

    p = subparsers.add_parser(
        "asr-decode",
        help="decode a data dir: greedy / beam + KenLM, n-best rescoring, scoring",
        description="Decode a data dir with a CTC model (greedy, or beam search with a KenLM), "
        "write text/nbest/ctm and score against the data dir's text.",
    )
    add_decoding_options(p)
    p.add_argument("--data", required=True, help="data dir to decode")
    p.add_argument("--out", required=True, help="decode dir")
    p.add_argument("--mode", choices=["greedy", "beam"], default="beam")
    p.add_argument("--rescore-lm", help="second (higher-order) LM to rescore the n-best with")
    p.add_argument(
        "--weights",
        help="decode.json of a tuning run: its alpha and beta (and rescore_alpha/_beta)",
    )
    p.add_argument("--beam", type=int, default=DecoderConfig.beam)
    p.add_argument("--nbest", type=int, default=10)
    p.add_argument(
        "--tune-alpha",
        type=comma_separated(float),
        default=[],
        help="comma list: grid-search alpha on this data dir's text (with --rescore-lm: the "
        "rescoring weights, on the first pass's n-best lists)",
    )
    p.add_argument(
        "--tune-beta",
        type=comma_separated(float),
        default=[],
        help="comma list for the grid search (default: the --beta)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from speechssl.asr.decode import DecoderConfig
    from speechssl.asr.infer import decode_data_dir

    check_device(args.device)
    config = DecoderConfig(beam=args.beam, alpha=args.alpha, beta=args.beta, nbest=args.nbest)
    data = args.data
    if args.enhance:  # decode an enhanced copy of the data dir, kept in <out>/enhanced
        data = _enhanced(args)
    summary = decode_data_dir(
        args.model, data, args.out, args.mode, config, args.lm, args.rescore_lm,
        args.weights, args.tune_alpha, args.tune_beta, args.nj, args.device,
    )  # fmt: skip
    if summary is not None:
        print(f"{args.out}: {summary.kaldi_line()}  CER {summary.cer:.2f}")
    return 0


def _enhanced(args: argparse.Namespace) -> str:
    from speechssl.enhance.infer import enhance_data_dir, load_enhancer
    from speechssl.errors import SpeechSSLError

    out, errors = enhance_data_dir(
        load_enhancer(args.enhance, args.device), args.data, f"{args.out}/enhanced"
    )
    if errors:
        utt, reason = next(iter(errors.items()))
        raise SpeechSSLError(
            f"--enhance: {len(errors)} utterance(s) unreadable, e.g. '{utt}': {reason}"
        )
    return str(out)
