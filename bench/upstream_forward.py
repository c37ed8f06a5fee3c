"""wav2vec 2.0 upstream forward speed: speechssl's ``SSLUpstream`` against Hugging Face
``transformers.Wav2Vec2Model`` with the same weights, in one run.

The HF model is built at the BASE configuration (random weights, fixed seed), saved with
``save_pretrained`` and loaded through ``speechssl.upstream.load_upstream``, so both run the same
numbers. Two batches: unpadded (4 x 10 s) and padded (10, 8.5, 7, 5.5 s). Outputs are checked
first: unpadded against HF's batch; padded against HF run on each utterance alone (HF's group
norm of the BASE extractor counts padded samples, so its padded batch is not the reference).

    python bench/upstream_forward.py                   # CPU, 2 threads, BASE, 5 repeats
    python bench/upstream_forward.py --device cuda --repeats 10

Prints the median seconds per forward and the speechssl/HF speed ratio (> 1: speechssl faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from speechssl.upstream import load_upstream  # noqa: E402

SAMPLE_RATE = 16000


def hf_base_model():
    import transformers

    torch.manual_seed(0)
    return transformers.Wav2Vec2Model(transformers.Wav2Vec2Config()).eval()  # BASE defaults


def batch(seconds: list[float], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([int(s * SAMPLE_RATE) for s in seconds])
    wavs = torch.zeros(len(seconds), int(lengths.max()))
    for i, n in enumerate(lengths.tolist()):
        wavs[i, :n] = 0.1 * torch.randn(n, generator=g)
    return wavs, lengths


def timed_pair(fn_a, fn_b, repeats: int, device: str) -> tuple[float, float]:
    """Median seconds of ``fn_a`` and ``fn_b``, run alternately (after one warm-up each) so a
    change in machine load hits both alike."""
    fn_a(), fn_b()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((fn_a, times[0]), (fn_b, times[1])):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def max_diff_valid(ours: list[torch.Tensor], theirs: list[list[torch.Tensor]], frames) -> float:
    """ours: per layer (B, T, D); theirs: per utterance, per layer (1, T_i, D)."""
    worst = 0.0
    for i, n in enumerate(frames):
        for a, b in zip(ours, theirs[i], strict=True):
            worst = max(worst, float((a[i, :n] - b[0, :n]).abs().max()))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hf = hf_base_model().to(args.device)
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        ours = load_upstream(folder).to(args.device).eval()
    print(f"device {args.device}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}")
    rows = []
    with torch.inference_mode():
        for name, seconds in (("unpadded", [10.0] * 4), ("padded", [10.0, 8.5, 7.0, 5.5])):
            wavs, lengths = (t.to(args.device) for t in batch(seconds))
            mask = (torch.arange(wavs.shape[1], device=args.device)[None] < lengths[:, None]).long()
            out = ours(wavs, lengths)
            if name == "unpadded":
                ref = hf(wavs, output_hidden_states=True).hidden_states
                diff = max(
                    float((a - b).abs().max()) for a, b in zip(out.hidden_states, ref, strict=True)
                )
            else:
                ref = [
                    list(hf(wavs[i : i + 1, :n], output_hidden_states=True).hidden_states)
                    for i, n in enumerate(lengths.tolist())
                ]
                diff = max_diff_valid(out.hidden_states, ref, out.lengths.tolist())
            t_ours, t_hf = timed_pair(
                lambda w=wavs, n=lengths: ours(w, n),
                lambda w=wavs, m=mask: hf(w, attention_mask=m, output_hidden_states=True),
                args.repeats,
                args.device,
            )
            rows.append((name, t_ours, t_hf, diff))
            print(f"{name}: speechssl {t_ours:.2f} s, HF {t_hf:.2f} s, max |diff| {diff:.1e}")
    print("\n| batch | speechssl s | HF s | speechssl/HF speed | max abs diff |")
    print("| --- | --- | --- | --- | --- |")
    for name, t_ours, t_hf, diff in rows:
        print(f"| {name} | {t_ours:.2f} | {t_hf:.2f} | {t_hf / t_ours:.2f}x | {diff:.1e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
