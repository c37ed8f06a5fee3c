"""Contrastive (InfoNCE) loss, forward + backward: the fused Triton kernel against the batched
GEMM + gather torch path and the fairseq-style path with materialised negatives, in one run.

    python bench/contrastive.py --check            # GPU: correctness pass, then the timings
    python bench/contrastive.py --device cpu --tiny --check   # CPU smoke run (TRITON_INTERPRET=1)

``--check`` first compares each backend with the fp64 fairseq-style computation on fresh random
inputs (fp32 and bf16; T not a multiple of the tile, K = 1 and 100, D = 256 and 768, rows
shorter than T, cross-sample negatives): loss within 1e-5 relative (fp32), gradients within
1e-4 (fp32) / 2e-2 (bf16). Timings: CUDA events, median of ``--repeats`` after warm-up, and
peak memory (``torch.cuda.max_memory_allocated`` above the inputs) at B = 16, M = 800 masked
frames per utterance, D = 256 and 768, K = 100, and a cross-sample setting (K = 50 + 50).
Prints a table last with the speed ratios against the other two paths.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
if "--device" in sys.argv and sys.argv[sys.argv.index("--device") + 1] == "cpu":
    os.environ.setdefault("TRITON_INTERPRET", "1")  # the kernels on a CPU: Triton's interpreter
from speechssl.kernels import (  # noqa: E402
    contrastive_loss,
    contrastive_loss_reference,
    sample_cross_negatives,
    sample_negatives,
)

BACKENDS = ("triton", "torch", "reference")


def make_inputs(b, t, d, k, kc, device, dtype, seed, ragged=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, d, generator=g).to(device, dtype)
    y = torch.randn(b, t, d, generator=g).to(device, dtype)
    counts = torch.full((b,), t)
    if ragged:
        counts[1:] = torch.randint(2, t + 1, (b - 1,), generator=g)
    valid = (torch.arange(t)[None, :] < counts[:, None]).to(device)
    neg = sample_negatives(counts, t, k, g).to(device)
    cross = sample_cross_negatives(counts, t, kc, g).to(device) if kc else None
    return x, y, neg, cross, valid


def run(backend, x, y, neg, cross, valid):
    x = x.detach().requires_grad_()
    y = y.detach().requires_grad_()
    fn = contrastive_loss_reference if backend == "reference" else contrastive_loss
    kw = {} if backend == "reference" else {"backend": backend}
    out = fn(x, y, neg, 0.1, valid=valid, cross_neg_idx=cross, **kw)
    gx, gy = torch.autograd.grad(out.loss, [x, y])
    return out, gx, gy


def rel(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp(min=1e-30))


def check(device: str, tiny: bool) -> bool:
    shapes = [(2, 37, 24, 5, 0), (2, 19, 40, 1, 3)] if tiny else [
        (4, 333, 256, 100, 0), (4, 301, 768, 100, 0), (3, 129, 256, 1, 0), (4, 250, 256, 50, 50)
    ]  # fmt: skip
    ok = True
    for seed, (b, t, d, k, kc) in enumerate(shapes):
        for dtype in (torch.float32, torch.bfloat16):
            x, y, neg, cross, valid = make_inputs(b, t, d, k, kc, device, dtype, 100 + seed, True)
            ref, rgx, rgy = run("reference", x.double(), y.double(), neg, cross, valid)
            for backend in ("triton", "torch"):
                out, gx, gy = run(backend, x, y, neg, cross, valid)
                loss_err = abs(float(out.loss) - float(ref.loss)) / abs(float(ref.loss))
                tol_loss, tol_grad = (1e-5, 1e-4) if dtype == torch.float32 else (1e-3, 2e-2)
                good = loss_err <= tol_loss and max(rel(gx, rgx), rel(gy, rgy)) <= tol_grad
                good = good and int(out.num_correct) == int(ref.num_correct)
                ok &= good
                print(
                    f"check {backend:7s} B={b} T={t} D={d} K={k}+{kc} {str(dtype)[6:]:8s} "
                    f"loss {loss_err:.1e} grad x {rel(gx, rgx):.1e} y {rel(gy, rgy):.1e} "
                    f"{'ok' if good else 'FAIL'}",
                    flush=True,
                )
    return ok


def timed(backend, inputs, device, repeats):
    """Median forward+backward milliseconds and peak extra memory (MB; GPU only)."""
    for _ in range(2):
        run(backend, *inputs)
    times = []
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    for _ in range(repeats):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run(backend, *inputs)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            run(backend, *inputs)
            times.append(1000 * (time.perf_counter() - t0))
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if device == "cuda" else float("nan")
    return statistics.median(times), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="small shapes (CPU smoke run)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--dtype", default="bf16", choices=("bf16", "fp32"))
    args = parser.parse_args()
    if args.device == "cuda":
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    if args.check and not check(args.device, args.tiny):
        print("correctness check FAILED")
        sys.exit(1)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    settings = [(2, 40, 32, 10, 0), (2, 40, 32, 5, 5)] if args.tiny else [
        (16, 800, 256, 100, 0), (16, 800, 768, 100, 0), (16, 800, 256, 50, 50)
    ]  # fmt: skip
    rows = []
    for b, t, d, k, kc in settings:
        inputs = make_inputs(b, t, d, k, kc, args.device, dtype, 0)
        result = {name: timed(name, inputs, args.device, args.repeats) for name in BACKENDS}
        rows.append(((b, t, d, k, kc), result))
    print(f"\n| B x M x D, K | {' | '.join(f'{n} ms (MB)' for n in BACKENDS)} | "
          "triton vs torch | triton vs reference |")  # fmt: skip
    print("|---" * (len(BACKENDS) + 3) + "|")
    for (b, t, d, k, kc), result in rows:
        cells = " | ".join(f"{ms:.2f} ({mb:.0f})" for ms, mb in result.values())
        speed_t = result["torch"][0] / result["triton"][0]
        speed_r = result["reference"][0] / result["triton"][0]
        print(f"| {b}x{t}x{d}, {k}+{kc} | {cells} | {speed_t:.2f}x | {speed_r:.1f}x |")


if __name__ == "__main__":
    main()
