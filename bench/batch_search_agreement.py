"""Agreement of the batched (GPU) beam search with the CPU prefix search on a real model's
log-probabilities: asr-decode's cache (``logprobs.pt`` of a decode dir), every final beam of
every utterance compared (labelling, rank, score), and the time of each search.

    python bench/batch_search_agreement.py \
      --logits egs/synth/exp/asr/fbank/decode/test_beam_lm/logprobs.pt \
      --lm egs/synth/exp/asr/fbank/lm/3gram/lm.arpa --beams 32,128 [--device cuda]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from speechssl.asr.batch_search import BatchPrefixSearch
from speechssl.asr.decode import CTCDecoder, DecoderConfig


def compare(decoder: CTCDecoder, utts: list[torch.Tensor], device: str) -> dict:
    lengths = torch.tensor([len(u) for u in utts])
    padded = torch.nn.utils.rnn.pad_sequence(utts, batch_first=True)
    search = BatchPrefixSearch(decoder, device)
    start = time.perf_counter()
    got = search(padded.to(device), lengths)
    batched = time.perf_counter() - start
    start = time.perf_counter()
    ref = [[(x[0], x[4]) for x in decoder.prefix_beams(u.numpy())] for u in utts]
    cpu = time.perf_counter() - start
    beams = sum(len(r) for r in ref)
    differ = sum([h.tokens for h in g] != [x[1] for x in r] for g, r in zip(got, ref))
    gap = max(abs(h.score - x[0]) for g, r in zip(got, ref) for h, x in zip(g, r))
    return {"beams": beams, "utts_differ": differ, "max_gap": gap, "batched_s": batched,
            "cpu_s": cpu}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--logits", required=True, help="a decode dir's logprobs.pt")
    p.add_argument("--lm", help="ARPA LM (omit: no LM)")
    p.add_argument("--beams", default="32", help="comma list")
    p.add_argument("--alpha", type=float, default=0.8)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    cache = torch.load(args.logits, weights_only=True)
    utts = list(cache["logprobs"].values())
    frames = sum(len(u) for u in utts)
    print(f"# {platform.node()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
          f"torch {torch.__version__}, device {args.device}")  # fmt: skip
    print(f"# {len(utts)} utterances, {frames} frames, LM {args.lm or 'none'}")
    print("| beam | beams compared | utterances differing | max score gap | batched s | CPU s |")
    print("|---|---|---|---|---|---|")
    for beam in map(int, args.beams.split(",")):
        config = DecoderConfig(beam=beam, alpha=args.alpha, beta=args.beta)
        r = compare(CTCDecoder(cache["tokens"], args.lm, config), utts, args.device)
        print(f"| {beam} | {r['beams']} | {r['utts_differ']} | {r['max_gap']:.1e} | "
              f"{r['batched_s']:.2f} | {r['cpu_s']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
