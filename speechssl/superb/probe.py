"""One probe: train the featurizer and a task head at one learning rate and seed, select the
best-dev checkpoint, evaluate it on test.

Why not the project's ``Trainer``: a probe trains on cached hidden states, not waveforms
(``Trainer`` batches an ``AudioDataset``), uses plain Adam without a schedule (``Trainer`` builds
AdamW + warmup), evaluates a task metric on dev to keep the best checkpoint, and its unit of
resumption is a whole (lr, seed) run, which takes seconds to minutes on cached features. The
loop below is those few things and nothing else.

Features come from a :class:`FeatureSource`: :class:`CachedSource` (hidden states read from the
disk cache; the default for a frozen upstream) or :class:`LiveSource` (the upstream run on every
batch: ``--finetune``, or ``--no-cache``).
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler
from tqdm import tqdm

from speechssl.data.audio import SAMPLE_RATE
from speechssl.data.dataset import AudioDataset, LengthBucketSampler, collate
from speechssl.io import atomic_torch_save, atomic_write_text
from speechssl.superb.cache import CachedHiddenStates
from speechssl.superb.featurizer import Featurizer
from speechssl.superb.tasks.base import ProbeBatch, Task
from speechssl.upstream import Upstream


class FeatureSource:
    """Hidden states of the utterances of one data dir.

    ``num_frames``: utt -> frames (for length bucketing); ``stride``; ``num_hidden_states``;
    ``dim``. ``batch(utts, grad)`` -> (``(L, B, T, D)`` tensor or L tensors ``(B, T, D)``,
    lengths ``(B,)``), on ``device``.
    """

    num_frames: dict[str, int]
    stride: int
    num_hidden_states: int
    dim: int
    device: torch.device

    def batch(self, utts: list[str], grad: bool = False):
        raise NotImplementedError


class CachedSource(FeatureSource):
    def __init__(self, cached: CachedHiddenStates, device: str | torch.device):
        self.cached = cached
        self.num_frames = cached.num_frames
        self.stride = cached.stride
        self.num_hidden_states = cached.num_hidden_states
        self.dim = cached.dim
        self.device = torch.device(device)

    def batch(self, utts: list[str], grad: bool = False):
        arrays = [self.cached.hidden_states(u) for u in utts]  # (T, L, D) float16 each
        lengths = torch.tensor([a.shape[0] for a in arrays], dtype=torch.long)
        out = torch.zeros(len(arrays), int(lengths.max()), self.num_hidden_states, self.dim,
                          dtype=torch.float16)  # fmt: skip
        for b, a in enumerate(arrays):
            out[b, : a.shape[0]] = torch.from_numpy(np.array(a))  # copy out of the memory map
        # fp16 to the device, float32 there; (B, T, L, D) -> (L, B, T, D) is a view
        hidden = out.to(self.device).float().permute(2, 0, 1, 3)
        return hidden, lengths.to(self.device)


class LiveSource(FeatureSource):
    """The upstream run on each batch (with gradients when fine-tuning)."""

    def __init__(self, upstream: Upstream, data_dir: Path, device: str | torch.device):
        self.upstream = upstream
        self.audio = AudioDataset(data_dir, crop=None)
        self.index = {u: i for i, u in enumerate(self.audio.utt_ids)}
        self.stride = int(upstream.stride)
        self.device = torch.device(device)
        self.num_frames = {
            u: max(1, n // self.stride)
            for u, n in zip(self.audio.utt_ids, self.audio.num_samples, strict=True)
        }
        with torch.no_grad():
            probe = upstream(torch.zeros(1, SAMPLE_RATE, device=self.device),
                             torch.tensor([SAMPLE_RATE], device=self.device))  # fmt: skip
        self.num_hidden_states = len(probe.hidden_states)
        self.dim = probe.hidden_states[0].shape[-1]

    def batch(self, utts: list[str], grad: bool = False):
        audio = collate([self.audio.load(self.index[u]) for u in utts])
        training = self.upstream.training
        self.upstream.train(training and grad)  # no dropout when evaluating
        with torch.set_grad_enabled(grad):
            out = self.upstream(audio.wavs.to(self.device), audio.lengths.to(self.device))
        self.upstream.train(training)
        return list(out.hidden_states), out.lengths.to(self.device)


@dataclass
class Split:
    """One split dir with its features and targets."""

    name: str  # "train" "dev" "test"
    data_dir: Path
    source: FeatureSource
    targets: dict

    @property
    def utts(self) -> list[str]:
        return [u for u in self.source.num_frames if u in self.targets]

    @cached_property
    def audio(self) -> AudioDataset:
        if isinstance(self.source, LiveSource):
            return self.source.audio
        return AudioDataset(self.data_dir, crop=None)

    @cached_property
    def audio_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.audio.utt_ids)}


@dataclass
class ProbeConfig:
    lr: float
    seed: int
    steps: int
    eval_every: int
    batch_size: int
    layer: int | None = None  # one hidden state instead of the weighted sum
    normalize: bool = False  # layer-norm the hidden states before the sum
    finetune: bool = False  # train the upstream too (LiveSource with gradients)
    # early stopping (ours; SUPERB trains every run to the end): stop after this many dev
    # evaluations in a row without a new best; None: run all the steps
    patience: int | None = None


def _wavs(split: Split, utts: list[str], device: torch.device):
    """The input audio of ``utts`` (SE): ``(B, S)`` padded and ``(B,)`` lengths."""
    index = split.audio_index
    audio = collate([split.audio.load(index[u]) for u in utts])
    return audio.wavs.to(device), audio.lengths.to(device)


def make_batch(
    task: Task,
    split: Split,
    utts: list[str],
    featurizer: Featurizer,
    grad: bool,
    crop_rng: np.random.Generator | None = None,
) -> ProbeBatch:
    """Featurizer output of ``utts`` as a ProbeBatch; training crops (SID 8 s) on the frames."""
    hidden, lengths = split.source.batch(utts, grad=grad)
    features = featurizer(hidden)
    stride = split.source.stride
    if crop_rng is not None and task.max_train_seconds:
        max_frames = max(1, int(task.max_train_seconds * SAMPLE_RATE / stride))
        if features.shape[1] > max_frames:
            starts = [
                int(crop_rng.integers(0, max(0, n - max_frames) + 1)) for n in lengths.tolist()
            ]
            features = torch.stack([features[b, s : s + max_frames] for b, s in enumerate(starts)])
            lengths = lengths.clamp(max=max_frames)
    wavs = wav_lengths = None
    if task.needs_audio:
        wavs, wav_lengths = _wavs(split, utts, features.device)
    return ProbeBatch(
        utt_ids=list(utts),
        features=features,
        lengths=lengths,
        stride=stride,
        targets=[split.targets[u] for u in utts],
        wavs=wavs,
        wav_lengths=wav_lengths,
    )


def train_batches(task: Task, split: Split, batch_size: int, seed: int) -> Iterator[list[str]]:
    """Endless training batches (utterance ids): class-balanced sampling for tasks that ask for
    it (KS), otherwise shuffled length buckets of ``batch_size`` utterances; seeded."""
    utts = split.utts
    if task.balanced_sampling:
        labels = [split.targets[u] for u in utts]
        counts: dict = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        weights = [1.0 / counts[label] for label in labels]
        generator = torch.Generator().manual_seed(seed)
        sampler = WeightedRandomSampler(weights, len(utts), replacement=True, generator=generator)
        while True:
            order = list(sampler)
            for k in range(0, len(order), batch_size):
                yield [utts[i] for i in order[k : k + batch_size]]
    frames = [split.source.num_frames[u] for u in utts]
    sampler = LengthBucketSampler(frames, math.inf, max_batch_size=batch_size, seed=seed)
    while True:
        for indices in sampler:
            yield [utts[i] for i in indices]


def eval_batches(split: Split, batch_size: int) -> list[list[str]]:
    """Every utterance once, sorted by length (less padding), in fixed batches."""
    utts = sorted(split.utts, key=lambda u: (split.source.num_frames[u], u))
    return [utts[k : k + batch_size] for k in range(0, len(utts), batch_size)]


def _eval_batches(task: Task, featurizer: Featurizer, split: Split, batch_size: int):
    """The split's batches without gradients (call under ``torch.no_grad``)."""
    return (
        make_batch(task, split, utts, featurizer, grad=False)
        for utts in eval_batches(split, batch_size)
    )


def evaluate(
    task: Task, head, featurizer: Featurizer, split: Split, batch_size: int
) -> dict[str, float]:
    was_training = head.training
    head.eval()
    featurizer.eval()
    with torch.no_grad():
        batches = _eval_batches(task, featurizer, split, batch_size)
        metrics = task.evaluate(head, batches, split.data_dir)
    head.train(was_training)
    featurizer.train(was_training)
    return {k: float(v) for k, v in metrics.items()}


def tune(task: Task, head, featurizer: Featurizer, split: Split, batch_size: int) -> dict:
    """``task.tune`` on ``split`` (dev) with the head and featurizer in eval mode."""
    head.eval()
    featurizer.eval()
    with torch.no_grad():
        return task.tune(head, _eval_batches(task, featurizer, split, batch_size))


def is_better(task: Task, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value > best if task.higher_is_better else value < best


def _optimizer(task: Task, params: list, lr: float) -> torch.optim.Optimizer:
    kind = task.optimizer
    if type(task).optimizer is Task.optimizer and task.name in ("se", "sv"):
        kind = "adamw"  # the protocol's optimizer for SE and SV
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=task.weight_decay)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"task {task.name}: unknown optimizer {kind!r} (adam or adamw)")


def train_probe(
    task: Task,
    splits: dict[str, Split],
    config: ProbeConfig,
    out_dir: Path,
    log: Callable[[str], None],
    upstream: Upstream | None = None,
) -> dict:
    """Train at ``config.lr`` / ``config.seed``; write ``best.pt``, the layer weights (JSON, PNG)
    and ``result.json`` (last, the run's completion marker) into ``out_dir``; return the result.
    """
    start = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    train = splits["train"]
    featurizer = Featurizer(train.source.num_hidden_states, config.layer, config.normalize)
    head = task.build_head(train.source.dim, train.source.stride, train.data_dir)
    featurizer.to(train.source.device)
    head.to(train.source.device)
    modules = {"featurizer": featurizer, "head": head}
    initial = None
    if config.finetune and upstream is not None:
        modules["upstream"] = upstream
        initial = copy.deepcopy(upstream.state_dict())  # every (lr, seed) starts from it
        upstream.train()
    params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    optimizer = _optimizer(task, params, config.lr)
    batches = train_batches(task, train, config.batch_size, config.seed)
    crop_rng = np.random.default_rng([config.seed, 1])
    best, best_state, best_dev, best_step = None, None, {}, 0
    stale, last_step = 0, config.steps  # evaluations since the best; the step it stopped at
    curve, losses = [], []
    # a moving line on a terminal (task, run, update, elapsed, ETA); the lines stay in log.txt
    bar = tqdm(
        total=config.steps,
        desc=getattr(log, "status", "") or task.name,
        unit="upd",
        file=sys.stderr,
        leave=False,
        # off when stderr is not a terminal, unless a job runner that shows its jobs' last
        # line asks for it (recipes' run_jobs sets SPEECHSSL_PROGRESS=1)
        disable=None if not os.environ.get("SPEECHSSL_PROGRESS") else False,
        mininterval=1.0,
        dynamic_ncols=True,
    )
    detail = getattr(log, "quiet", log)
    for step in range(1, config.steps + 1):
        bar.update()
        batch = make_batch(task, train, next(batches), featurizer, True, crop_rng)
        loss_sum, units = task.loss(head, batch)
        loss = loss_sum / max(units, 1)
        optimizer.zero_grad(set_to_none=True)
        if torch.isfinite(loss):
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, task.grad_clip)
            optimizer.step()
            losses.append(loss.item())
        else:
            log(f"step {step}: non-finite loss {loss.item()}, update skipped")
        if step % config.eval_every == 0 or step == config.steps:
            dev = evaluate(task, head, featurizer, splits["dev"], config.batch_size)
            improved = is_better(task, dev[task.metric], best)
            if improved:
                best, best_dev, best_step = dev[task.metric], dev, step
                best_state = {k: copy.deepcopy(m.state_dict()) for k, m in modules.items()}
            train_loss = float(np.mean(losses)) if losses else float("nan")
            curve.append({"step": step, "train_loss": train_loss, "dev": dev[task.metric]})
            losses = []
            detail(
                f"step {step}: train loss {train_loss:.4f}, dev {task.metric} "
                f"{dev[task.metric]:.2f}{' (best)' if improved else ''}"
            )
            bar.set_postfix_str(f"dev {task.metric} {dev[task.metric]:.2f}", refresh=False)
            stale = 0 if improved else stale + 1
            if config.patience and stale >= config.patience and step < config.steps:
                last_step = step
                detail(f"early stop at step {step}: no better dev {task.metric} in {stale} "
                       f"evaluations (patience {config.patience})")  # fmt: skip
                break
    bar.close()
    for key, module in modules.items():
        module.load_state_dict(best_state[key])
    decoding = tune(task, head, featurizer, splits["dev"], config.batch_size)
    if decoding:  # the dev figure of the tuned decoder (lr selection compares these)
        detail(f"tuned on dev: {decoding}")
        best_dev = evaluate(task, head, featurizer, splits["dev"], config.batch_size)
        best = best_dev[task.metric]
    test = evaluate(task, head, featurizer, splits["test"], config.batch_size)
    atomic_torch_save({"task": task.name, "step": best_step, **best_state}, out_dir / "best.pt")
    if initial is not None:
        upstream.load_state_dict(initial)
        upstream.eval()
    featurizer.save_weights(out_dir / "layer_weights.json")
    featurizer.plot_weights(out_dir / "layer_weights.png", f"{task.name} lr={config.lr:.2e}")
    result = {
        "task": task.name,
        "metric": task.metric,
        "lr": config.lr,
        "seed": config.seed,
        "steps": config.steps,
        "steps_run": last_step,  # < steps: stopped early (patience)
        "best_step": best_step,
        "dev": best_dev,
        "test": test,
        "decoding": decoding,  # settings tuned on dev after training (ASR: LM weights)
        "layer_weights": featurizer.layer_weights().tolist(),
        "curve": curve,  # mean train loss since the previous evaluation, dev metric
        "seconds": round(time.time() - start, 3),
    }
    atomic_write_text(out_dir / "result.json", json.dumps(result, indent=1) + "\n")
    log(f"best step {best_step}: dev {task.metric} {best:.2f}, "
        f"test {task.metric} {test[task.metric]:.2f}")  # fmt: skip
    return result
