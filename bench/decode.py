"""Benchmark: speechssl's CTC prefix beam search with KenLM fusion vs pyctcdecode 0.5.0.

Same log-probabilities, same 3-gram KenLM, same beam / alpha / beta / pruning, one process each.
Prints utterances/s of each decoder, the speed ratio ours / pyctcdecode (target >= 1), how often
the two 1-best texts agree, and the WER of each (and of greedy decoding).

Default data (the reference sheet's §2.4 setup at this project's scale): sentences of the
synthetic corpus grammar, several per utterance (~300 frames), rendered as peaky CTC emissions
over a 29-token character vocabulary with 5% letter confusions; the LM is a 3-gram built by
``lmplz --prune 0 0 1`` from other sentences of the same grammar.

    python bench/decode.py                       # 200 utterances, beams 32 and 100
    python bench/decode.py --utts 50 --beams 16
    python bench/decode.py --logits logp.pt --tokens tokens.txt --lm lm.arpa [--text ref.txt]
    # the real test set: asr-decode's cache of the model's log-probabilities, references sorted
    python bench/decode.py --logits egs/synth/exp/asr/fbank/decode/test_beam_lm/logprobs.pt \
      --tokens egs/synth/exp/asr/fbank/tokens.txt --lm egs/synth/exp/asr/fbank/lm/3gram/lm.arpa \
      --text <(cut -d' ' -f2- egs/synth/data/asr/test/text) --alpha A --beta B

pyctcdecode runs three ways: ``decode_beams`` (n-best, no history pruning: the search ours does)
and ``decode`` (its 1-best call, which also drops beams sharing the LM history), both stock, and
``decode_beams`` with its end-of-utterance empty-word scoring fixed (``build_pyctcdecode``), which
makes its objective the same as ours. The speed ratio is taken against the stock runs; where the
1-best texts differ, the bench says which text the shared objective prefers.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import jiwer
import numpy as np
import torch
from decode_peer import build_pyctcdecode, simulate_ctc_emissions

from speechssl.asr.decode import CTCDecoder, DecoderConfig
from speechssl.asr.lm import LN10, KenLM, build_arpa

CHAR_TOKENS = ["<blank>", "|", "'", *"abcdefghijklmnopqrstuvwxyz"]
# letters an acoustic model mixes up (each maps to its look/sound-alikes)
CONFUSABLE = {"a": "e", "e": "ai", "i": "ey", "o": "u", "u": "o", "b": "p", "p": "b",
              "d": "t", "t": "d", "m": "n", "n": "m", "s": "z", "c": "k", "k": "c", "g": "j"}  # fmt: skip


def grammar_sentences(count: int, seed: int) -> list[str]:
    from speechssl.data.synth.grammar import Grammar
    from speechssl.data.text import normalize_text

    grammar, rng = Grammar(), np.random.default_rng(seed)
    return [normalize_text(grammar.sentence(rng)) for _ in range(count)]


def char_labelling(text: str, tokens: list[str]) -> list[int]:
    index = {t: i for i, t in enumerate(tokens)}
    return [index[c] for c in "|".join(text.split())]


def synthetic_setup(args: argparse.Namespace, work: Path):
    """(tokens, lm path, logprobs list, reference texts) of the default benchmark data."""
    lm_text = work / "lm_text.txt"
    lm_text.write_text("\n".join(grammar_sentences(args.lm_sentences, args.seed)) + "\n")
    arpa = build_arpa(lm_text, work / "lm.arpa", order=3, prune=[0, 0, 1])
    # utterances: whole sentences (other seed) until ~frames / 2.5 characters (the emission
    # model spends 2.5 frames per character on average)
    pool = iter(grammar_sentences(args.utts * 20, args.seed + 1))
    refs = []
    for _ in range(args.utts):
        words: list[str] = []
        while not words or len(" ".join(words)) < args.frames / 2.5 - 20:
            words += next(pool).split()
        refs.append(" ".join(words))
    rng = np.random.default_rng(args.seed + 2)
    index = {t: i for i, t in enumerate(CHAR_TOKENS)}
    confusions = {index[c]: [index[x] for x in alts] for c, alts in CONFUSABLE.items()}
    labellings = [char_labelling(r, CHAR_TOKENS) for r in refs]
    logprobs = simulate_ctc_emissions(labellings, len(CHAR_TOKENS), rng, confusions=confusions)
    return CHAR_TOKENS, arpa, logprobs, refs


def load_external(args: argparse.Namespace):
    """(tokens, lm, logprobs list, refs or None) from --logits/--tokens/--lm[/--text]."""
    # one token a line, or "<token> <id>" lines (the tokenizer's tokens.txt)
    lines = [line for line in Path(args.tokens).read_text(encoding="utf-8").split("\n") if line]
    tokens = [line.split()[0] if line.split()[-1].isdigit() else line for line in lines]
    if args.logits.endswith(".npy"):
        data = np.load(args.logits, allow_pickle=False)
        logits = [data] if data.ndim == 2 else list(data)
    else:
        data = torch.load(args.logits, weights_only=True)
        if isinstance(data, dict) and "logprobs" in data:  # an asr-decode logprobs.pt cache
            utts = sorted(data["logprobs"])
            data = [data["logprobs"][u] for u in utts]
            print(f"{args.logits}: {len(utts)} utterances of a decode dir (sorted by id)")
        logits = [data] if torch.is_tensor(data) and data.ndim == 2 else list(data)
    logprobs = [torch.as_tensor(x).float().log_softmax(-1).numpy() for x in logits]
    refs = None
    if args.text:
        refs = [line.strip() for line in Path(args.text).read_text().splitlines()]
        if len(refs) != len(logprobs):
            raise SystemExit(f"error: {args.text} has {len(refs)} lines for {len(logprobs)} utts")
    return tokens, Path(args.lm), logprobs, refs


def time_decoder(decode, logprobs: list[np.ndarray]) -> tuple[list[str], float, float]:
    """(texts, CPU seconds, wall seconds): CPU time is what to compare on a shared machine."""
    cpu, wall = time.process_time(), time.perf_counter()
    texts = [decode(lp) for lp in logprobs]
    return texts, time.process_time() - cpu, time.perf_counter() - wall


def wer(refs: list[str] | None, hyps: list[str]) -> str:
    return "n/a" if refs is None else f"{100 * jiwer.wer(refs, hyps):.2f}%"


def objective(text: str, lp: np.ndarray, tokens: list[str], lm: KenLM | None, args) -> float:
    """The score both decoders maximise, for a text: the full-sum CTC log-probability of its
    labelling + alpha * ln P_lm (OOV words + unk_score) + beta * #words."""
    labels = char_labelling(text, tokens)
    am = -torch.nn.functional.ctc_loss(
        torch.from_numpy(lp)[:, None], torch.tensor([labels]), [len(lp)], [len(labels)],
        reduction="sum",
    ).item()  # fmt: skip
    if lm is None:
        return am
    words = text.split()
    lm_score = lm.sentence_score(words) + args.unk_score * LN10 * sum(map(lm.is_oov, words))
    return am + args.alpha * lm_score + args.beta * len(words)


def disagreements(ours, theirs, logprobs, tokens, lm, args) -> str:
    """Of the utterances where the 1-best texts differ, how many score higher by the shared
    objective with ours, and how many with pyctcdecode's (a search error of the other)."""
    if "|" not in tokens:
        return ""
    better = [0, 0]
    for a, b, lp in zip(ours, theirs, logprobs):
        if a != b:
            better[objective(a, lp, tokens, lm, args) < objective(b, lp, tokens, lm, args)] += 1
    return (
        f"; where they differ, the shared objective prefers ours {better[0]}x, theirs {better[1]}x"
    )


def run_beam(beam, args, tokens, lm, arpa, logprobs, refs, with_lm: bool) -> None:
    config = DecoderConfig(
        beam=beam,
        alpha=args.alpha,
        beta=args.beta if with_lm else 0.0,  # pyctcdecode has no word bonus without an LM
        beam_prune_logp=args.beam_prune_logp,
        token_min_logp=args.token_min_logp,
        unk_score=args.unk_score,
    )
    ours = CTCDecoder(tokens, lm if with_lm else None, config)
    stock = build_pyctcdecode(tokens, arpa if with_lm else None, config, fix_final_word=False)
    fixed = build_pyctcdecode(tokens, arpa if with_lm else None, config, fix_final_word=True)
    common = dict(
        beam_width=beam, beam_prune_logp=args.beam_prune_logp, token_min_logp=args.token_min_logp
    )
    # warm-up: first-use costs (imports, LM caches) out of the timing
    ours.beam_search(logprobs[0])
    stock.decode(logprobs[0], **common)
    runs = {
        "speechssl CTCDecoder.beam_search": lambda x: ours.beam_search(x)[0].text,
        "pyctcdecode decode_beams": lambda x: stock.decode_beams(x, **common)[0][0],
        "pyctcdecode decode (1-best)": lambda x: stock.decode(x, **common),
        "pyctcdecode decode_beams, fixed": lambda x: fixed.decode_beams(x, **common)[0][0],
    }
    if not with_lm:
        del runs["pyctcdecode decode_beams, fixed"]  # the fix is about LM scoring
    results = {name: time_decoder(fn, logprobs) for name, fn in runs.items()}
    n = len(logprobs)
    print(f"\nbeam {beam}, {'3-gram LM' if with_lm else 'no LM'} (alpha {args.alpha}, "
          f"beta {config.beta}, beam_prune_logp {args.beam_prune_logp}, "
          f"token_min_logp {args.token_min_logp}, unk_score {args.unk_score})")  # fmt: skip
    print(f"  {'decoder':34s} {'utts/s CPU':>10s} {'utts/s wall':>11s} {'WER':>8s}")
    for name, (texts, cpu, wall) in results.items():
        print(f"  {name:34s} {n / cpu:10.1f} {n / wall:11.1f} {wer(refs, texts):>8s}")
    ours_texts, ours_cpu, _ = results["speechssl CTCDecoder.beam_search"]
    ratios = [results[name][1] / ours_cpu for name in list(runs)[1:3]]
    print(f"  speed ratio ours/pyctcdecode (CPU time): {ratios[0]:.2f}x vs decode_beams, "
          f"{ratios[1]:.2f}x vs decode; min {min(ratios):.2f}x")  # fmt: skip
    for name in list(runs)[1:]:
        texts = results[name][0]
        agree = np.mean([a == b for a, b in zip(ours_texts, texts)])
        why = disagreements(ours_texts, texts, logprobs, tokens, lm if with_lm else None, args)
        print(f"  agreement with {name}: {100 * agree:.1f}%{why}")


def machine() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").is_file():
        names = [
            line for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line
        ]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    return (
        f"machine: {cpu}, {os.cpu_count()} CPUs "
        f"({cpus} usable), python {platform.python_version()}, torch {torch.__version__}, "
        f"numpy {np.__version__}, pyctcdecode {version('pyctcdecode')}, kenlm {version('kenlm')}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--utts", type=int, default=200, help="synthetic utterances")
    p.add_argument("--frames", type=int, default=300, help="about this many frames each")
    p.add_argument("--lm-sentences", type=int, default=20000, help="LM training sentences")
    p.add_argument("--beams", type=int, nargs="+", default=[32, 100])
    p.add_argument("--no-lm-beams", type=int, nargs="*", default=[32], help="also without LM")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--beam-prune-logp", type=float, default=-10.0)
    p.add_argument("--token-min-logp", type=float, default=-5.0)
    p.add_argument("--unk-score", type=float, default=-10.0, help="natural log")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logits", help="(B, T, V) or (T, V) .npy, or .pt tensor / list of tensors")
    p.add_argument(
        "--tokens", help="with --logits: tokens.txt (a token, or '<token> <id>', a line)"
    )
    p.add_argument("--lm", help="with --logits: ARPA file (pyctcdecode needs it for unigrams)")
    p.add_argument("--text", help="with --logits: reference texts, one per utterance")
    args = p.parse_args(argv)
    logging.getLogger("pyctcdecode").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    print(machine())
    with tempfile.TemporaryDirectory() as work:
        if args.logits:
            if not (args.tokens and args.lm):
                p.error("--logits needs --tokens and --lm")
            tokens, arpa, logprobs, refs = load_external(args)
        else:
            start = time.perf_counter()
            tokens, arpa, logprobs, refs = synthetic_setup(args, Path(work))
            print(f"data: built in {time.perf_counter() - start:.1f} s")
        lm = KenLM(arpa)
        frames = sum(len(x) for x in logprobs)
        print(f"data: {len(logprobs)} utterances, {frames} frames ({frames / len(logprobs):.0f} "
              f"per utterance), V = {len(tokens)}, LM {arpa.name} order {lm.order}, "
              f"{len(lm.vocab or ())} words")  # fmt: skip
        greedy = CTCDecoder(tokens)
        print(f"greedy WER: {wer(refs, [greedy.greedy(x).text for x in logprobs])}")
        for beam in args.beams:
            run_beam(beam, args, tokens, lm, arpa, logprobs, refs, with_lm=True)
        for beam in args.no_lm_beams:
            run_beam(beam, args, tokens, lm, arpa, logprobs, refs, with_lm=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
