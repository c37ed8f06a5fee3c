"""The Trainer on a tiny real model: convergence, accumulation = big batch, exact resume, DDP =
one process, checkpoints, NaN skipping, schedules.

Everything runs on the CPU: the bf16-autocast and CUDA-memory branches of the Trainer cannot run
on this machine (no GPU); precision "auto" resolves to fp32 here.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_data_dir
from torch import nn

from speechssl.config import load_config
from speechssl.data.dataset import AudioBatch, AudioDataset, BatchIndices
from speechssl.train import (
    CheckpointError,
    ModelOutput,
    Trainer,
    TrainerConfig,
    TrainingError,
    load_checkpoint,
    save_checkpoint,
)
from speechssl.train.optim import lr_multiplier, param_groups
from speechssl.train.rng import SeededBatchDataset, get_rng_state, set_rng_state

KERNEL, STRIDE = 64, 32


class TinyRegressor(nn.Module):
    """Predicts the log energy of each 64-sample frame (hop 32) from a conv over the frame.

    The loss sums over the frames inside each utterance only, so padding never changes it.
    """

    def __init__(self, dropout: float = 0.0, nan_utts: tuple[str, ...] = ()):
        super().__init__()
        self.conv = nn.Conv1d(1, 16, KERNEL, stride=STRIDE)
        self.norm = nn.LayerNorm(16)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(16, 1)
        self.nan_utts = set(nan_utts)
        self.seen_updates: list[int] = []
        self.steps_done: list[int] = []

    def forward(self, batch: AudioBatch) -> ModelOutput:
        hidden = self.norm(self.conv(batch.wavs.unsqueeze(1)).transpose(1, 2))
        pred = self.out(self.drop(F.gelu(hidden))).squeeze(-1)  # (B, T)
        frames = batch.wavs.unfold(1, KERNEL, STRIDE)  # (B, T, KERNEL)
        target = torch.log(frames.pow(2).mean(-1) + 1e-4)
        valid = (batch.lengths - KERNEL) // STRIDE + 1
        mask = torch.arange(pred.shape[1])[None, :] < valid[:, None]
        loss = ((pred - target) ** 2 * mask).sum()
        if self.nan_utts & set(batch.utt_ids):
            loss = loss * float("nan")
        size = int(mask.sum())
        return ModelOutput(loss, size, {"mse": loss.detach() / size})

    def set_num_updates(self, num_updates: int) -> None:
        self.seen_updates.append(num_updates)

    def after_optimizer_step(self, num_updates: int) -> None:
        self.steps_done.append(num_updates)


def small_config(**overrides) -> TrainerConfig:
    values = dict(
        max_updates=6,
        lr=5e-3,
        warmup_updates=2,
        max_batch_seconds=100.0,
        max_batch_size=4,
        save_every=100,
        log_every=2,
        progress_bar=False,
        device="cpu",
    )
    values.update(overrides)
    return TrainerConfig(**values)


def make_model(seed: int = 0, **kwargs) -> TinyRegressor:
    torch.manual_seed(seed)
    return TinyRegressor(**kwargs)


def run(data: AudioDataset, exp: Path, model=None, resume=False, **cfg) -> TinyRegressor:
    dropout = cfg.pop("dropout", 0.1)
    model = model or make_model(dropout=dropout)
    Trainer(model, data, small_config(**cfg), exp, config={"model": {"kind": "tiny"}}).train(
        resume=resume
    )
    return model


def max_diff(a: nn.Module, b: nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa)


def records(exp: Path) -> list[dict]:
    lines = (exp / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("data"))


@pytest.fixture
def padded(data_dir: Path) -> AudioDataset:
    return AudioDataset(data_dir, crop=None)


@pytest.fixture
def cropped(data_dir: Path) -> AudioDataset:
    return AudioDataset(data_dir, crop="random", max_samples=8000)


def test_loss_decreases_and_logs(padded: AudioDataset, tmp_path: Path) -> None:
    model = run(padded, tmp_path, max_updates=12, lr=2e-2, dropout=0.0)
    losses = [r["loss"] for r in records(tmp_path)]
    assert len(losses) == 12
    assert sum(losses[-3:]) < 0.5 * sum(losses[:3])
    assert model.seen_updates == list(range(12)) and model.steps_done == list(range(1, 13))
    rec = records(tmp_path)[-1]
    assert {"lr", "grad_norm", "mse", "audio_s_per_s", "sample_size", "epoch"} <= set(rec)
    assert "update 12" in (tmp_path / "train.log").read_text()
    assert any((tmp_path / "tensorboard").iterdir())
    assert (tmp_path / "checkpoints" / "last.pt").is_file()


def test_grad_accumulation_equals_one_big_batch(padded: AudioDataset, tmp_path: Path) -> None:
    common = dict(max_updates=3, shuffle=False, dropout=0.0)
    accum = run(padded, tmp_path / "a", max_batch_size=2, grad_accum=2, **common)
    big = run(padded, tmp_path / "b", max_batch_size=4, grad_accum=1, **common)
    assert max_diff(accum, big) <= 1e-6
    assert max_diff(accum, make_model()) > 1e-3  # it did train


@pytest.mark.parametrize("num_workers,grad_accum,stop", [(0, 1, 2), (0, 2, 3), (1, 1, 4)])
def test_resume_is_exact(cropped, tmp_path: Path, num_workers, grad_accum, stop) -> None:
    """Dropout, shuffling and random crops: a run stopped at update ``stop`` and resumed equals
    an uninterrupted run. With 3 batches an epoch the stop falls mid-epoch, except for
    grad_accum=2, stop=3 (an epoch's end)."""
    common = dict(max_updates=6, save_every=stop, num_workers=num_workers, grad_accum=grad_accum)
    whole = run(cropped, tmp_path / "whole", **common)
    run(cropped, tmp_path / "parts", stop_after=stop, **common)
    assert records(tmp_path / "parts")[-1]["num_updates"] == stop
    other_init = make_model(seed=1, dropout=0.1)
    resumed = run(cropped, tmp_path / "parts", model=other_init, resume=True, **common)
    assert max_diff(whole, resumed) <= 1e-6
    assert [r["loss"] for r in records(tmp_path / "whole")] == pytest.approx(
        [r["loss"] for r in records(tmp_path / "parts")], abs=1e-6
    )
    assert resumed.seen_updates == list(range(stop, 6))


def test_resume_falls_back_to_previous_checkpoint(cropped, tmp_path: Path, caplog) -> None:
    """A run killed after update 6 whose last.pt and ckpt-6.pt got corrupted: resume warns,
    continues from ckpt-3, reaches the uninterrupted result, and logs each update once."""
    common = dict(max_updates=6, save_every=3, keep_last=None)
    whole = run(cropped, tmp_path / "whole", **common)
    run(cropped, tmp_path / "killed", **common)
    ckpts = tmp_path / "killed" / "checkpoints"
    for name in ("last.pt", "ckpt-6.pt"):  # unlink first: last.pt is a hard link to ckpt-6.pt
        data = (ckpts / name).read_bytes()
        (ckpts / name).unlink()
        (ckpts / name).write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="speechssl.train"):
        resumed = run(
            cropped,
            tmp_path / "killed",
            model=make_model(seed=3, dropout=0.1),
            resume=True,
            **common,
        )
    assert "last.pt" in caplog.text and "ckpt-6.pt" in caplog.text
    assert max_diff(whole, resumed) <= 1e-6
    assert [r["num_updates"] for r in records(tmp_path / "killed")] == [1, 2, 3, 4, 5, 6]
    assert load_checkpoint(ckpts / "last.pt")["num_updates"] == 6


def test_fresh_start_refuses_existing_checkpoints(padded, tmp_path: Path) -> None:
    run(padded, tmp_path, max_updates=1)
    with pytest.raises(TrainingError, match="resume=True"):
        run(padded, tmp_path, max_updates=2)
    run(padded, tmp_path, max_updates=1, resume=True)  # nothing left to do


DDP_SCRIPT = """
import sys
from pathlib import Path

import torch

sys.path.insert(0, {tests!r})
from test_trainer import make_model, small_config

from speechssl.data.dataset import AudioDataset
from speechssl.train import Trainer
from speechssl.train.distributed import exit_process

data_dir, exp = sys.argv[1], Path(sys.argv[2])
model = make_model(dropout=0.0)
cfg = small_config(max_updates=5, max_batch_size=2, shuffle=False)
trainer = Trainer(model, AudioDataset(data_dir, crop=None), cfg, exp)
trainer.train()
if trainer.dist.rank == 0:
    torch.save(model.state_dict(), exp / "params.pt")
exit_process(0)
"""


@pytest.mark.slow  # about 10 s: torchrun and two processes importing torch on 2 cores
def test_ddp_two_ranks_equal_one_process(data_dir: Path, padded, tmp_path: Path) -> None:
    """torchrun, 2 CPU ranks (gloo) with 2 utterances per batch each == 1 process with 4."""
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, str(script), str(data_dir), str(tmp_path / "ddp")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = run(
        padded, tmp_path / "one", max_updates=5, max_batch_size=4, shuffle=False, dropout=0.0
    )
    ddp = torch.load(tmp_path / "ddp" / "params.pt", weights_only=True)
    diff = max(float((single.state_dict()[k] - v).abs().max()) for k, v in ddp.items())
    assert diff <= 1e-5
    ddp_losses = [r["loss"] for r in records(tmp_path / "ddp")]
    assert ddp_losses == pytest.approx([r["loss"] for r in records(tmp_path / "one")], abs=1e-5)


def test_exit_process_keeps_the_code_and_buffered_output() -> None:
    """A torchrun worker ends through os._exit (see exit_process): what it printed into a
    pipe's buffer still arrives, and the exit status is the one given."""
    code = "from speechssl.train.distributed import exit_process\nprint('kept')\nexit_process(3)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (proc.returncode, proc.stdout) == (3, "kept\n"), proc.stderr[-2000:]


def test_checkpoint_contents_load_weights_only(padded, tmp_path: Path) -> None:
    run(padded, tmp_path, max_updates=5, save_every=1, keep_last=2)
    ckpts = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["ckpt-4.pt", "ckpt-5.pt", "last.pt"]
    state = torch.load(ckpts / "last.pt", map_location="cpu", weights_only=True)
    assert state["format"] == "speechssl-checkpoint-v1" and state["num_updates"] == 5
    assert state["config"]["model"] == {"kind": "tiny"}
    assert state["config"]["trainer"]["max_updates"] == 5
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "sampler", "epoch"} <= set(state)
    assert isinstance(state["rng"]["numpy"]["key"], torch.Tensor)
    assert state["sampler"]["epoch"] == state["epoch"]
    assert load_checkpoint(ckpts / "ckpt-5.pt")["num_updates"] == 5


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch) -> None:
    save_checkpoint({"num_updates": 1, "model": {"w": torch.ones(3)}}, tmp_path)

    def failing_save(obj, path):
        Path(path).write_bytes(b"PK partial")
        raise OSError("No space left on device")

    monkeypatch.setattr("speechssl.train.checkpoint.torch.save", failing_save)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint({"num_updates": 2, "model": {"w": torch.zeros(3)}}, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-1.pt", "last.pt"]
    assert load_checkpoint(tmp_path / "last.pt")["num_updates"] == 1


def test_unreadable_checkpoint_errors_name_the_file(tmp_path: Path) -> None:
    save_checkpoint({"num_updates": 1, "model": {"w": torch.ones(1000)}}, tmp_path)
    save_checkpoint({"num_updates": 2, "model": {"w": torch.ones(1000)}}, tmp_path)
    good = (tmp_path / "ckpt-2.pt").read_bytes()
    truncated = tmp_path / "copy.pt"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(truncated)
    assert str(truncated) in str(err.value) and "delete" in str(err.value)
    assert "ckpt-2.pt" in str(err.value)  # points at the previous checkpoints
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(tmp_path / "other.pt")
    assert load_checkpoint(tmp_path / "other.pt", expect_format=None)["weights"].sum() == 2


def test_nan_loss_skips_the_update_and_names_utterances(padded, tmp_path: Path, caplog) -> None:
    bad = padded.utt_ids[5]
    model = make_model(nan_utts=(bad,))
    with caplog.at_level(logging.WARNING, logger="speechssl.train"):
        run(padded, tmp_path, model=model, max_updates=4, shuffle=False)
    assert bad in caplog.text and "skipped" in caplog.text
    assert [r["num_updates"] for r in records(tmp_path)] == [1, 2, 3, 4]
    assert model.steps_done == [1, 2, 3, 4]
    assert len(model.seen_updates) > 4 and set(model.seen_updates) == {0, 1, 2, 3}
    assert bad in (tmp_path / "train.log").read_text()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_always_nan_aborts(padded, tmp_path: Path) -> None:
    model = make_model(nan_utts=tuple(padded.utt_ids))
    with pytest.raises(TrainingError, match="3 consecutive"):
        run(padded, tmp_path, model=model, max_updates=5, max_bad_steps=3)


def test_validation_is_logged(padded, tmp_path: Path) -> None:
    model = make_model()
    cfg = small_config(max_updates=4, save_every=2)
    Trainer(model, padded, cfg, tmp_path, valid_dataset=padded).train()
    valid = [r for r in records(tmp_path) if "valid_loss" in r]
    assert [r["num_updates"] for r in valid] == [2, 4] and "valid_mse" in valid[0]


def test_bf16_autocast_path_on_cpu(padded, tmp_path: Path) -> None:
    """precision "auto" is fp32 on the CPU; "bf16" runs the autocast branch (the CUDA one, with
    GPU memory stats, cannot run on this machine)."""
    model = make_model(dropout=0.0)
    trainer = Trainer(model, padded, small_config(max_updates=4, lr=2e-2), tmp_path / "auto")
    assert trainer.device.type == "cpu" and not trainer.use_bf16
    trainer = Trainer(
        model, padded, small_config(max_updates=4, precision="bf16"), tmp_path / "bf16"
    )
    assert trainer.use_bf16
    trainer.train()
    losses = [r["loss"] for r in records(tmp_path / "bf16")]
    assert len(losses) == 4 and all(map(math.isfinite, losses))
    assert "gpu_mem_gb" not in records(tmp_path / "bf16")[0]


def test_rng_state_round_trip_weights_only(tmp_path: Path) -> None:
    torch.save(get_rng_state(), tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and (expected[1] == again[1]).all()
    assert expected[2] == again[2]


def test_seeded_batches_depend_on_the_batch_seed_only() -> None:
    class Augmented(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, index: int) -> float:
            return float(torch.rand(())) + np.random.rand() + random.random()

    data = SeededBatchDataset(Augmented())
    state = torch.get_rng_state()
    first = data.__getitems__(BatchIndices([0, 1], seed=5))
    assert torch.equal(torch.get_rng_state(), state)  # the caller's stream is untouched
    torch.rand(10), np.random.rand(), random.random()
    assert data.__getitems__(BatchIndices([0, 1], seed=5)) == first and first[0] != first[1]
    assert data.__getitems__(BatchIndices([0, 1], seed=6)) != first


def test_schedules() -> None:
    linear = lr_multiplier(small_config(max_updates=10, warmup_updates=4))
    assert [linear(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert linear(7) == pytest.approx(0.5) and linear(10) == 0.0
    poly = lr_multiplier(
        small_config(
            schedule="polynomial", max_updates=10, warmup_updates=0, power=2.0, end_lr_scale=0.1
        )
    )
    assert poly(0) == 1.0 and poly(5) == pytest.approx(0.1 + 0.9 * 0.25) and poly(10) == 0.1
    tri = lr_multiplier(
        small_config(schedule="tri_stage", max_updates=100, tri_stage_phases=[0.1, 0.4, 0.5])
    )
    assert tri(0) == pytest.approx(0.01) and tri(10) == 1.0 and tri(49) == 1.0
    assert tri(75) == pytest.approx(0.05**0.5) and tri(100) == pytest.approx(0.05)
    const = lr_multiplier(small_config(schedule="constant", warmup_updates=2))
    assert [const(s) for s in (0, 1, 5)] == [0.5, 1.0, 1.0]


def test_config_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text(
        textwrap.dedent(
            """
            max_updates: 100
            betas: [0.9, 0.999]
            schedule: tri_stage
            tri_stage_phases: [0.1, 0.2, 0.7]
            """
        )
    )
    cfg = load_config(TrainerConfig, path, ["lr=0.001"])
    assert cfg.betas == [0.9, 0.999] and cfg.lr == 1e-3 and cfg.schedule == "tri_stage"
    with pytest.raises(ValueError, match="schedule"):
        load_config(TrainerConfig, None, ["schedule=cosine"])
    # YAML 1.1 reads 1e-3 (no dot) as a string; the config loader converts numeric strings
    assert load_config(TrainerConfig, None, ["lr=1e-3"]).lr == 1e-3
    with pytest.raises(ValueError, match="lr must be a number"):
        TrainerConfig(lr="fast")


def test_no_weight_decay_on_biases_and_norms() -> None:
    model = make_model()
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model.conv.weight), id(model.out.weight)}
    assert len(no_decay["params"]) == 4  # conv/linear biases, LayerNorm weight and bias


def test_fp16_loss_scaling_follows_fp32_and_skips_overflows(padded, tmp_path: Path) -> None:
    """precision fp16 (CPU autocast here; the same GradScaler path as on a GPU): the loss
    falls as fp32's does; a loss scale far too large overflows the fp16 backward, so updates
    are skipped and the scale halved until they are finite, none counted as bad steps; the
    scaler state is checkpointed and a resumed run repeats the uninterrupted one."""
    run(padded, tmp_path / "fp32", max_updates=12, lr=2e-2, dropout=0.0)
    run(padded, tmp_path / "fp16", max_updates=12, lr=2e-2, dropout=0.0, precision="fp16")
    fp32 = [r["loss"] for r in records(tmp_path / "fp32")]
    fp16 = [r["loss"] for r in records(tmp_path / "fp16") if "loss" in r]
    assert sum(fp16[-3:]) < 0.5 * sum(fp16[:3])
    assert fp16 == pytest.approx(fp32, rel=0.1)  # fp16 matmuls: close, not equal

    big = 2.0**40  # fp16's largest value is 65504: gradients of loss x 2^40 overflow
    run(
        padded,
        tmp_path / "over",
        max_updates=6,
        lr=2e-2,
        dropout=0.0,
        precision="fp16",
        fp16_init_scale=big,
        save_every=3,
    )
    log = (tmp_path / "over" / "train.log").read_text()
    skipped = log.count("fp16 gradient overflow")
    assert skipped >= 10 and "skipped the update" not in log  # halved, not bad steps
    scales = [r["loss_scale"] for r in records(tmp_path / "over") if "loss" in r]
    assert len(scales) == 6 and scales[0] == big / 2**skipped and scales[-1] == scales[0]
    state = load_checkpoint(tmp_path / "over" / "checkpoints" / "last.pt")
    assert state["scaler"]["scale"] == scales[-1]

    run(
        padded,
        tmp_path / "cut",
        max_updates=6,
        lr=2e-2,
        dropout=0.0,
        precision="fp16",
        fp16_init_scale=big,
        save_every=3,
        stop_after=3,
    )
    resumed = run(
        padded,
        tmp_path / "cut",
        max_updates=6,
        lr=2e-2,
        dropout=0.0,
        precision="fp16",
        fp16_init_scale=big,
        save_every=3,
        resume=True,
    )
    full = make_model(dropout=0.0)
    full.load_state_dict(state["model"])
    assert max_diff(full, resumed) <= 1e-6
