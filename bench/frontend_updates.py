"""Updates per minute of the masked methods with the waveform CNN against the fbank front end
(``model.frontend: fbank``), same preset, batch and thread count, in one run.

One update = forward + backward + Adam step on a fixed batch of B crops of S seconds (the tiny
recipes crop to 2 s); the median of ``--steps`` timed updates after one warm-up.

    python bench/frontend_updates.py                        # tiny, 1 thread, 8 x 2 s
    python bench/frontend_updates.py --preset base --threads 2 --batch 2 --steps 3

Prints one line per method: seconds per update with each front end and the ratio (> 1: the
fbank front end buys that many more updates per minute).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from speechssl.data.dataset import AudioBatch  # noqa: E402
from speechssl.ssl import build_model  # noqa: E402


def batch_for(method: str, model, b: int, samples: int) -> AudioBatch:
    g = torch.Generator().manual_seed(0)
    wavs = 0.1 * torch.randn(b, samples, generator=g)
    lengths = torch.full((b,), samples)
    ids = [f"u{i}" for i in range(b)]
    if method != "hubert":
        return AudioBatch(wavs, lengths, ids)
    n = int(samples * model.cfg.label_rate // 16000)
    labels = torch.randint(0, model.cfg.num_classes, (b, n), generator=g)
    return AudioBatch(wavs, lengths, ids, labels, torch.full((b,), n))


def seconds_per_update(model, batch: AudioBatch, steps: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        model.set_num_updates(step)
        out = model(batch)
        opt.zero_grad()
        (out.loss / out.sample_size).backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--methods", default="wav2vec2,hubert,data2vec")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    samples = int(args.seconds * 16000)
    print(f"preset {args.preset}, {args.threads} thread(s), batch {args.batch} x {args.seconds} s")
    for method in args.methods.split(","):
        result = {}
        for frontend in ("cnn", "fbank"):
            torch.manual_seed(0)
            model = build_model(method, preset=args.preset, frontend=frontend).train()
            batch = batch_for(method, model, args.batch, samples)
            result[frontend] = seconds_per_update(model, batch, args.steps)
        ratio = result["cnn"] / result["fbank"]
        print(
            f"{method:9s} cnn {result['cnn']:.3f} s/update  fbank {result['fbank']:.3f} s/update"
            f"  fbank/cnn updates per minute {ratio:.2f}x"
        )


if __name__ == "__main__":
    main()
