"""Every registered SSL method through `speechssl pretrain`: a run killed after 3 updates and
resumed ends where an uninterrupted one does (<= 1e-6), and torchrun with 2 CPU ranks ends where
one process with grad_accum 2 does (<= 1e-5).

Why DDP can equal one process for the methods with random masks, alterations, Gumbel noise
and negatives: their generators are keyed by (seed, update, the micro-batch's utterance ids)
(`speechssl.ssl.masking.StepGenerators`), not by rank; rank r of N trains batches r, r+N, ...,
which are the micro-batches one process with grad_accum N sums into the same update. Dropout
(global RNG, per rank) is the one thing that does not carry over: the small configs here turn it
off, as the tiny presets do.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import make_data_dir

from speechssl.cli import main
from speechssl.train import load_checkpoint

TRANSFORMER = ["model.hidden_size=32", "model.num_layers=2", "model.num_heads=2"]
TRANSFORMER += ["model.ffn_dim=64"]
MASKED = TRANSFORMER + ["model.pos_conv_kernel=8", "model.pos_conv_groups=2"]
MASKED += ["model.conv_layers=[[32,10,5],[32,3,2],[32,3,2],[32,2,2],[32,2,2]]"]
METHODS: dict[str, list[str]] = {
    "wav2vec2": MASKED
    + ["model.codebook_entries=16", "model.final_dim=16"]
    + ["model.num_negatives=5", "model.codebook_negatives=2"],
    "hubert": MASKED,
    "data2vec": MASKED + ["model.average_top_k_layers=2"],
    "tera": TRANSFORMER,
    "mockingjay": TRANSFORMER,
    "apc": ["model.hidden_size=32"],
    "cpc": ["model.encoder_dim=32", "model.context_dim=32", "model.num_negatives=6"]
    + ["model.num_steps=4"],
}
COMMON = ["preset=tiny", "trainer.lr=2e-3", "trainer.warmup_updates=2", "trainer.log_every=1"]
COMMON += ["trainer.progress_bar=false", "trainer.max_batch_seconds=100.0", "trainer.shuffle=false"]
COMMON += ["data.max_samples=9600"]


def write_labels(data: Path, out: Path) -> Path:
    """HuBERT targets written here: 4 classes of each 10 ms frame's log energy (quartiles)."""
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for line in (data / "wav.scp").read_text().splitlines():
        utt, rel = line.split()
        wav, _ = sf.read(data / rel)
        n = len(wav) // 160  # floor(samples * 100 / 16000) labels at 100 Hz
        energy = np.log((wav[: n * 160].reshape(n, 160) ** 2).mean(1) + 1e-8)
        labels = np.searchsorted(np.quantile(energy, [0.25, 0.5, 0.75]), energy)
        lines.append(utt + " " + " ".join(map(str, labels)))
    (out / "train.km").write_text("\n".join(lines) + "\n")
    (out / "labels.yaml").write_text("rate: 100.0\nclusters: 4\n")
    return out / "train.km"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("methods")
    data = make_data_dir(root / "data", speakers=2, per_speaker=4)
    return data, write_labels(data, root / "labels")


def argv(method: str, data: Path, labels: Path, exp: Path, *sets: str) -> list[str]:
    args = ["pretrain", "--method", method, "--data", str(data), "--exp", str(exp)]
    if method == "hubert":
        args += ["--labels", str(labels)]
    return args + [x for kv in COMMON + METHODS[method] + list(sets) for x in ("--set", kv)]


def params(exp: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(exp / "checkpoints" / "last.pt")["model"]


def worst(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())


def test_every_method_is_covered():
    from speechssl.ssl import METHOD_MODULES

    assert set(METHODS) == set(METHOD_MODULES)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_resume_is_exact(method, data, tmp_path):
    d, labels = data
    steps = ["trainer.max_updates=6", "trainer.max_batch_size=4", "trainer.save_every=3"]
    assert main(argv(method, d, labels, tmp_path / "full", *steps)) == 0
    assert main(argv(method, d, labels, tmp_path / "cut", *steps, "trainer.stop_after=3")) == 0
    assert load_checkpoint(tmp_path / "cut/checkpoints/last.pt")["num_updates"] == 3
    assert main(argv(method, d, labels, tmp_path / "cut", *steps)) == 0  # resumes at 3
    diff = worst(params(tmp_path / "full"), params(tmp_path / "cut"))
    assert diff <= 1e-6, diff
    moved = worst(
        params(tmp_path / "full"), load_checkpoint(tmp_path / "full/checkpoints/ckpt-3.pt")["model"]
    )
    assert moved > 1e-4  # updates 4-6 did change the weights


DDP_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_methods_resume_ddp import argv
from pathlib import Path
from speechssl.cli import main
from speechssl.train.distributed import exit_process

data, labels, root = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
for method in sys.argv[4:]:
    sets = ["trainer.max_updates=4", "trainer.max_batch_size=2", "trainer.save_every=4"]
    assert main(argv(method, data, labels, root / method, *sets)) == 0, method
exit_process(0)  # the script, not main(argv), is the program here
"""


@pytest.mark.slow  # one torchrun (2 processes importing torch) for all methods, ~1 min on 2 cores
def test_ddp_two_ranks_equal_one_process(data, tmp_path):
    d, labels = data
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, str(script), str(d), str(labels), str(tmp_path / "ddp"), *sorted(METHODS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for method in sorted(METHODS):
        sets = ["trainer.max_updates=4", "trainer.max_batch_size=2", "trainer.save_every=4"]
        sets += ["trainer.grad_accum=2"]
        assert main(argv(method, d, labels, tmp_path / "one" / method, *sets)) == 0
        ddp, one = params(tmp_path / "ddp" / method), params(tmp_path / "one" / method)
        diff = worst(ddp, one)
        assert diff <= 1e-5, (method, diff)
