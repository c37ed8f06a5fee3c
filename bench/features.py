"""Features-stage throughput vs calling torchaudio directly on the same files.

Both sides read every utterance's audio from disk and compute 80-d Kaldi fbank with one thread;
the pipeline also validates the audio and writes the ark/scp. Prints audio-seconds per second
for each and their ratio (pipeline / direct; >= 0.9 is the target).

    python bench/features.py [--data egs/synth/data/asr/train_labeled] [--repeats 3]

Without --data it writes 200 short (0.3-0.9 s) chirp+noise utterances to a temp dir; pass the
synthetic corpus (stage 1 output) for speech of realistic length.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.compliance.kaldi as ta_kaldi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from speechssl.data.kaldi import DataDir  # noqa: E402
from speechssl.features import FeatureConfig  # noqa: E402
from speechssl.features.pipeline import compute_job  # noqa: E402


def make_corpus(root: Path, n: int = 200) -> Path:
    from tests.conftest import make_data_dir

    return make_data_dir(root, speakers=10, per_speaker=n // 10)


def direct(data: DataDir) -> float:
    total = 0.0
    for utt in data.utt_ids:
        wav, sr = sf.read(data.resolve(data.wav_scp[utt]), dtype="float32")
        ta_kaldi.fbank(
            torch.from_numpy(wav)[None] * 32768, num_mel_bins=80, dither=0.0, sample_frequency=sr
        )
        total += len(wav) / sr
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-features-"))
    data_dir = args.data or make_corpus(tmp / "data")
    data = DataDir.load(data_dir)
    seconds = direct(data)  # warm-up (file cache, kernels)
    t_direct, t_pipe = [], []
    for r in range(args.repeats):
        start = time.perf_counter()
        direct(data)
        t_direct.append(time.perf_counter() - start)
        out = tmp / f"feats{r}"
        start = time.perf_counter()
        compute_job(data_dir, out, FeatureConfig(), "bench", 1)
        t_pipe.append(time.perf_counter() - start)
        shutil.rmtree(out)
    d, p = min(t_direct), min(t_pipe)
    print(f"data: {data_dir} ({len(data.utt_ids)} utterances, {seconds:.0f} s of audio)")
    print(f"{'':28s}{'audio-s/s':>12s}")
    print(f"{'torchaudio direct':28s}{seconds / d:12.0f}")
    print(f"{'speechssl features stage':28s}{seconds / p:12.0f}")
    print(f"ratio speechssl/torchaudio: {d / p:.2f} (target >= 0.9)")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
