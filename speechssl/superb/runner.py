"""The SUPERB runner: every task x fold x learning rate x seed, dev-based selection, report.

For each task and fold: the upstream's hidden states of train/dev/test come from the disk cache
(computed once per upstream and data dir), then one probe (:mod:`speechssl.superb.probe`) is
trained per (lr, seed). The reported number of a task is the test metric, at the best-dev
checkpoint of each seed, of the lr whose mean dev metric (over seeds and folds) is best: mean ±
std over seeds, each seed's value averaged over folds (ER). Nothing is selected on test.

Layout under ``exp``::

    <upstream>/<task>/[fold<k>/]lr<lr>/seed<s>/{best.pt,layer_weights.json,.png,result.json}
    <upstream>/<task>/summary.json   the selected lr, mean ± std, the sweep (dev by lr)
    <upstream>/<task>/log.txt
    cache/<key>/                     hidden states (shared by every task and rerun)
    results.{md,csv,png}             all upstreams under exp (speechssl.superb.report)

``result.json`` is written last in a run folder: a rerun skips every (lr, seed) that has it, so a
killed sweep resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from speechssl.data.kaldi import DataDirError
from speechssl.errors import SpeechSSLError
from speechssl.io import atomic_write_text
from speechssl.superb.cache import (
    CacheStats,
    cached_hidden_states,
    upstream_identity,
)
from speechssl.superb.probe import CachedSource, LiveSource, ProbeConfig, Split, train_probe
from speechssl.superb.report import upstream_name
from speechssl.superb.tasks import TASKS, Task, get_task
from speechssl.upstream import Upstream, load_upstream

LR_EXPONENTS = (-1.0, -0.5, 0.0, 0.5, 1.0)  # default sweep: default_lr x 10^e
# ``--set TASK.KEY=VALUE`` keys that set the probe of one task rather than its constructor
PROBE_SETTINGS = ("steps", "eval_every", "batch_size", "normalize", "lrs", "patience")


class SuperbError(SpeechSSLError, ValueError):
    """Bad input to the runner (unknown task, missing data dir); the message names it."""


@dataclass
class SuperbConfig:
    """How to probe (``speechssl superb --config FILE --set KEY=VALUE`` through
    :func:`speechssl.config.load_config`; the command's options override the file)."""

    lrs: list[float] | None = None  # the sweep (default: lr_grid of each task's protocol lr)
    seeds: list[int] = field(default_factory=lambda: [0])
    steps: int | None = None  # optimizer updates per run (default: the protocol's)
    eval_every: int | None = None  # dev evaluation interval (default: steps / 10, <= 5000)
    batch_size: int | None = None  # utterances per update (default: the protocol's)
    patience: int | None = None  # stop a run after this many dev evaluations without a best
    layer: int | None = None  # probe one hidden state instead of the weighted sum
    normalize: bool = False  # layer-norm each hidden state before the sum
    finetune: bool = False  # train the upstream too (no cache)
    use_cache: bool = True  # False: run the upstream on every batch
    device: str | None = None  # default: cuda if available
    name: str | None = None  # the upstream's name in exp/ and the report (default: from spec)
    cache_dir: str | None = None  # hidden-state cache (default: <exp>/cache)
    upstream_id: str | None = None  # cache key of an Upstream object (default: weights hash)
    report: bool = True  # write <exp>/results.{md,csv,png}
    # per task: its constructor's keywords and probe settings (PROBE_SETTINGS) over the ones
    # above, e.g. {"asr": {"hidden_size": 64, "steps": 1500, "lrs": [3e-3, 1e-2]}}
    task_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.lrs is not None and not all(math.isfinite(v) and v > 0 for v in self.lrs):
            raise ValueError(f"lrs: learning rates must be positive numbers, found {self.lrs}")
        unknown = sorted(set(self.task_options) - set(TASKS))
        if unknown:
            raise ValueError(f"task_options: unknown task(s) {unknown}; tasks: {', '.join(TASKS)}")


def lr_grid(default_lr: float, exponents: Sequence[float] = LR_EXPONENTS) -> list[float]:
    """A log grid around the protocol's lr, rounded to 3 significant digits."""
    return [float(f"{default_lr * 10**e:.3g}") for e in exponents]


def _num_hidden_states(upstream: Upstream, device: str) -> int:
    try:
        return upstream.num_layers + 1
    except NotImplementedError:  # an upstream that does not say: ask it
        with torch.no_grad():
            wav = torch.zeros(1, 16000, device=device)
            return len(upstream(wav, torch.tensor([16000], device=device)).hidden_states)


def check_task_data(task: Task, data: Path) -> list[dict[str, Path]]:
    """The task's folds; raises SuperbError naming a missing data dir or label file."""
    folds = task.splits(data)
    for fold in folds:
        for split in ("train", "dev", "test"):
            if split not in fold:
                raise SuperbError(f"task {task.name}: no {split} split under {data}")
            if not (fold[split] / "wav.scp").is_file():
                raise SuperbError(
                    f"task {task.name}: data dir {fold[split]} is missing (no wav.scp); "
                    f"prepare it, or leave {task.name} out of --task"
                )
            try:
                task.targets(fold[split])
            except (DataDirError, ValueError) as e:
                raise SuperbError(f"task {task.name}: {e}") from None
    return folds


class _Log:
    """Lines to stderr and appended to ``log.txt`` with a time stamp."""

    def __init__(self, path: Path | None = None, prefix: str = ""):
        self.path, self.prefix = path, prefix

    status = ""  # where the sweep is ("task 2/8, run 3/3"), shown on the progress line

    def __call__(self, message: str, terminal: bool = True) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {self.prefix}{message}"
        if terminal:
            print(line, file=sys.stderr, flush=True)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    def quiet(self, message: str) -> None:
        """To ``log.txt`` only (per-evaluation lines; the terminal shows a progress line)."""
        self(message, terminal=False)

    def child(self, prefix: str, status: str | None = None) -> _Log:
        child = _Log(self.path, self.prefix + prefix)
        child.status = self.status if status is None else status
        return child


def _fold_name(fold: dict[str, Path], k: int, num_folds: int) -> str | None:
    if num_folds == 1:
        return None
    parent = fold["train"].parent.name
    return parent if re.fullmatch(r"fold\d+", parent) else f"fold{k + 1}"


def _run_dir(task_dir: Path, fold: str | None, lr: float, seed: int) -> Path:
    return (task_dir / fold if fold else task_dir) / f"lr{lr:.2e}" / f"seed{seed}"


def summarize(task: Task, runs: list[dict], upstream: dict, chance: float) -> dict:
    """The selected lr (best mean dev over seeds and folds) and its test mean ± std."""
    by_lr: dict[float, list[dict]] = {}
    for run in runs:
        by_lr.setdefault(run["lr"], []).append(run)
    sweep = []
    for lr, lr_runs in by_lr.items():
        sweep.append(
            {
                "lr": lr,
                "dev": statistics.fmean(r["dev"][task.metric] for r in lr_runs),
                "test": statistics.fmean(r["test"][task.metric] for r in lr_runs),
            }
        )
    sign = 1 if task.higher_is_better else -1
    best = max(sweep, key=lambda s: sign * s["dev"])
    per_seed: dict[int, list[float]] = {}
    for run in by_lr[best["lr"]]:
        per_seed.setdefault(run["seed"], []).append(run["test"][task.metric])
    values = [statistics.fmean(v) for _, v in sorted(per_seed.items())]
    return {
        "task": task.name,
        "metric": task.metric,
        "higher_is_better": task.higher_is_better,
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
        "seeds": sorted(per_seed),
        "dev_lr": best["lr"],
        "dev": best["dev"],
        "chance": chance,
        "folds": len({r.get("fold") for r in runs}),
        "sweep": sorted(sweep, key=lambda s: s["lr"]),
        "probe_seconds": round(sum(r["seconds"] for r in runs), 1),
        **upstream,
    }


@dataclass
class _Features:
    """Where a task's hidden states come from: the cache (frozen upstream) or the upstream
    itself on every batch (fine-tuning, ``use_cache=False``)."""

    upstream: Upstream
    spec: str | Path | None
    upstream_id: str | None
    device: str
    live: bool
    cache_root: Path
    cache_layers: list[int] | None
    stats: CacheStats = field(default_factory=CacheStats)

    def source(self, split_dir: Path, log: _Log):
        if self.live:
            return LiveSource(self.upstream, split_dir, self.device)
        self.upstream_id = self.upstream_id or upstream_identity(self.spec, self.upstream)
        cached = cached_hidden_states(
            self.upstream, self.upstream_id, split_dir, self.cache_root, self.stats,
            self.cache_layers, self.device, log=log,
        )  # fmt: skip
        return CachedSource(cached, self.device)

    def splits(self, task: Task, fold: dict[str, Path], log: _Log) -> dict[str, Split]:
        return {
            name: Split(name, fold[name], self.source(fold[name], log), task.targets(fold[name]))
            for name in ("train", "dev", "test")
        }


def split_task_options(
    task_options: dict[str, dict],
) -> tuple[dict[str, dict], dict[str, dict]]:
    """``SuperbConfig.task_options`` -> (task constructor options, per-task probe settings):
    ``steps``, ``eval_every``, ``batch_size``, ``patience`` (positive integers), ``normalize`` (bool) and
    ``lrs`` (a list of positive numbers) override the top-level values for that task only, e.g.
    an ASR probe that needs more updates than KS."""
    constructor: dict[str, dict] = {}
    probe: dict[str, dict] = {}
    for task, options in task_options.items():
        for key, value in options.items():
            if key not in PROBE_SETTINGS:
                constructor.setdefault(task, {})[key] = value
                continue
            where = f"--set {task}.{key}={value!r}"
            if key == "normalize":
                if not isinstance(value, bool):
                    raise SuperbError(f"{where}: expected true or false")
            elif key == "lrs":
                values = value if isinstance(value, list) else [value]
                try:
                    value = [float(v) for v in values]
                except (TypeError, ValueError):
                    raise SuperbError(
                        f"{where}: expected a list of numbers, e.g. [1e-3,1e-2]"
                    ) from None
                if not value or not all(math.isfinite(v) and v > 0 for v in value):
                    raise SuperbError(f"{where}: learning rates must be positive numbers")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SuperbError(f"{where}: expected a positive integer")
            probe.setdefault(task, {})[key] = value
    return constructor, probe


def _build_tasks(tasks: Sequence[str | Task], task_options: dict[str, dict]) -> list[Task]:
    unknown = [t for t in tasks if isinstance(t, str) and t not in TASKS]
    if unknown:
        raise SuperbError(f"unknown task {unknown[0]!r}; choose from {', '.join(TASKS)}")
    built = []
    for t in tasks:
        try:
            built.append(t if isinstance(t, Task) else get_task(t, **task_options.get(t, {})))
        except TypeError as e:
            raise SuperbError(f"task {t}: bad option ({e})") from None
        except ImportError as e:
            raise SuperbError(f"task {t}: not available ({e})") from None
    return built


def _sweep(
    task: Task,
    folds: list[dict[str, Path]],
    features: _Features,
    task_dir: Path,
    lrs: list[float],
    seeds: Sequence[int],
    config: dict,
    log: _Log,
) -> tuple[list[dict], list[float]]:
    """Every fold x lr x seed of one task (finished runs are read back); runs and chances."""
    runs, chances = [], []
    total, done = len(folds) * len(lrs) * len(seeds), 0
    for k, fold in enumerate(folds):
        fold_name = _fold_name(fold, k, len(folds))
        flog = log.child(f"{fold_name} ") if fold_name else log
        chances.append(task.chance(fold["train"], fold["test"]))
        splits = None  # loaded (from the cache) only if a run is left to do
        for lr in lrs:
            for seed in seeds:
                run_dir = _run_dir(task_dir, fold_name, lr, seed)
                if (run_dir / "result.json").is_file():
                    result = json.loads((run_dir / "result.json").read_text())
                    flog(f"lr {lr:.2e} seed {seed}: done already")
                else:
                    splits = splits or features.splits(task, fold, flog)
                    status = f"{log.status}run {done + 1}/{total}"
                    rlog = flog.child(f"lr {lr:.2e} seed {seed}: ", status)
                    probe = ProbeConfig(lr=lr, seed=seed, **config)
                    result = train_probe(task, splits, probe, run_dir, rlog, features.upstream)
                runs.append({**result, "fold": fold_name})
                done += 1
    return runs, chances


def run_superb(
    cfg: SuperbConfig,
    upstream_spec: str | Path | Upstream,
    tasks: Sequence[str | Task],
    data: str | Path,
    exp: str | Path,
) -> list[dict]:
    """Probe one upstream on ``tasks``; returns one summary per task (also written to
    ``<exp>/<name>/<task>/summary.json``) and, with ``cfg.report``, writes ``<exp>/results.*``.

    ``upstream_spec``: anything :func:`speechssl.upstream.load_upstream` reads, or an
    ``Upstream`` object (then give ``cfg.name``; ``cfg.upstream_id`` defaults to a hash of its
    weights). ``tasks``: names (``"pr"``, ...) or Task objects. ``data``: the corpus root.
    """
    data, exp = Path(data), Path(exp)
    if not data.is_dir():
        raise SuperbError(f"--data {data}: no such folder (give the corpus root)")
    constructor_options, probe_settings = split_task_options(cfg.task_options)
    task_objs = _build_tasks(tasks, constructor_options)
    folds_by_task = {task.name: check_task_data(task, data) for task in task_objs}
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise SuperbError(f"--device {device}: no CUDA device here; use --device cpu")
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False

    if isinstance(upstream_spec, Upstream):
        upstream, spec = upstream_spec.to(device).eval(), None
        name = cfg.name or type(upstream).__name__.lower()
    else:
        upstream, spec = load_upstream(upstream_spec, device=device), upstream_spec
        name = cfg.name or upstream_name(spec)
    upstream_info = {
        "upstream": name,
        "upstream_spec": str(spec) if spec is not None else name,
        "upstream_params": sum(p.numel() for p in upstream.parameters()),
    }
    for p in upstream.parameters():
        p.requires_grad_(cfg.finetune)
    if cfg.finetune:  # as s3prl: no LayerDrop while fine-tuning under the weighted sum
        for module in upstream.modules():
            if hasattr(module, "layerdrop"):
                module.layerdrop = 0.0
    num_states = _num_hidden_states(upstream, device)
    layer = cfg.layer
    if layer is not None and not -num_states <= layer < num_states:
        raise SuperbError(f"--layer {layer}: the upstream has {num_states} hidden states")
    live = cfg.finetune or not cfg.use_cache
    features = _Features(
        upstream, spec, cfg.upstream_id, device, live,
        cache_root=Path(cfg.cache_dir) if cfg.cache_dir else exp / "cache",
        cache_layers=None if layer is None or live else [layer % num_states],
    )  # fmt: skip
    summaries = []
    for k, task in enumerate(task_objs):
        task_dir = exp / name / task.name
        log = _Log(task_dir / "log.txt", f"[{name} {task.name}] ")
        log.status = f"{name} {task.name} (task {k + 1}/{len(task_objs)}) "
        own = probe_settings.get(task.name, {})
        task_lrs = own.get("lrs") or cfg.lrs or lr_grid(task.default_lr)
        task_steps = own.get("steps") or cfg.steps or task.default_steps
        every = own.get("eval_every") or cfg.eval_every or max(1, min(5000, task_steps // 10))
        config = dict(
            steps=task_steps,
            eval_every=every,
            batch_size=own.get("batch_size") or cfg.batch_size or task.batch_size,
            layer=layer if live else None,  # the cache holds the one layer already
            normalize=own.get("normalize", cfg.normalize),
            finetune=cfg.finetune,
            patience=own.get("patience") or cfg.patience,
        )
        log(
            f"lrs {task_lrs}, seeds {list(cfg.seeds)}, {task_steps} steps, batch "
            f"{config['batch_size']}{', layer-normed' if config['normalize'] else ''}"
            f"{', patience ' + str(config['patience']) if config['patience'] else ''}, "
            f"device {device}"
        )
        folds = folds_by_task[task.name]
        runs, chances = _sweep(task, folds, features, task_dir, task_lrs, cfg.seeds, config, log)
        summary = summarize(task, runs, upstream_info, statistics.fmean(chances))
        summary["normalize"] = config["normalize"]  # the report labels layer-normed rows ours
        atomic_write_text(task_dir / "summary.json", json.dumps(summary, indent=1) + "\n")
        log(
            f"test {task.metric} {summary['mean']:.2f} ± {summary['std']:.2f} at dev-selected "
            f"lr {summary['dev_lr']:.2e} (chance {summary['chance']:.2f}); {features.stats}"
        )
        summaries.append(summary)
    _Log(exp / name / "log.txt")(str(features.stats))
    if cfg.report:
        from speechssl.superb.report import write_report

        write_report(exp)
    return summaries
