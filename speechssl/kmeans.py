"""HuBERT's k-means label stage: fit clusters on features, dump one label per frame.

Iteration 1 clusters 39-d MFCC (13 + delta + delta-delta, Kaldi MFCC, no CMVN, 100 Hz), as
fairseq's ``examples/hubert/simple_kmeans``; iteration n+1 clusters the hidden states after layer
``L`` (1-based, fairseq's ``output_layer``) of the iteration-n model, read through the Upstream
interface (50 Hz for a 320-sample stride).

Files (``km_dir`` is e.g. ``<exp>/hubert_iter1/kmeans``, ``label_dir`` ``<exp>/hubert_iter1/labels``)::

    <km_dir>/centroids.npy       (K, D) float32 centroids, written atomically (no pickle)
    <km_dir>/kmeans.yaml         KmeansConfig plus dim, rate, utterances/frames used, inertia
    <label_dir>/<set>.km         Kaldi table ``<utt> l1 l2 ...``, C-sorted
    <label_dir>/<set>.km.<job>   one shard's table when dumped with ``nj > 1`` (merge_labels joins)
    <label_dir>/labels.yaml      rate (Hz), source, layer, clusters, kmeans dir

Fairseq feeds float samples in [-1, 1] to Kaldi MFCC; ``compute_features`` scales them to the
int16 range first, which adds a constant to c0 only, so clusters (and labels) are the same.

HuBERT meets the labels with its frames through :func:`speechssl.ssl.hubert.align_labels`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import yaml

from speechssl.data.kaldi import DataDir, DataDirError, read_table, write_table
from speechssl.features import FeatureConfig, compute_features
from speechssl.io import atomic_save_numpy, atomic_write_text
from speechssl.upstream import load_upstream

MFCC_CONFIG = FeatureConfig(kind="mfcc", deltas=True)
MFCC_RATE = 1000.0 / MFCC_CONFIG.frame_shift_ms  # 100 Hz


@dataclass
class KmeansConfig:
    n_clusters: int = 100  # 100 on MFCC (iteration 1), 500 on hidden states (later)
    percent: float = 0.1  # fraction of utterances sampled to fit; <= 0 or >= 1: all
    min_utts: int = 100  # sample at least this many utterances (or all there are)
    # k-means++ restarts; fairseq uses 20, each costs a full init on CPU, so 4 by default
    n_init: int = 4
    max_iter: int = 100
    batch_size: int = 10000
    seed: int = 0
    feature: str = "mfcc"  # "mfcc" (iteration 1) or "upstream" (hidden states, iteration 2+)
    upstream: str | None = None  # checkpoint or folder for speechssl.upstream.load_upstream
    layer: int | None = None  # 1-based: hidden_states[layer] is the output after that layer
    device: str = "cpu"  # where the upstream runs

    def __post_init__(self) -> None:
        if self.feature not in ("mfcc", "upstream"):
            raise ValueError(f"kmeans feature must be 'mfcc' or 'upstream', not {self.feature!r}")
        if self.feature == "upstream" and (self.upstream is None or self.layer is None):
            raise ValueError("kmeans feature 'upstream' needs upstream=<path> and layer=<L>")


class FeatureReader:
    """``reader(wav) -> (T, D)`` float32 features of one utterance; ``reader.rate`` in Hz."""

    def __init__(self, cfg: KmeansConfig, upstream: torch.nn.Module | None = None):
        self.cfg = cfg
        self.upstream = upstream
        self.rate = MFCC_RATE
        if cfg.feature == "upstream" and upstream is None:
            self.upstream = load_upstream(cfg.upstream)
        if self.upstream is not None:
            self.upstream.eval().to(cfg.device)

    def __call__(self, wav: np.ndarray) -> torch.Tensor:
        if self.upstream is None:
            return compute_features(wav, MFCC_CONFIG)
        # one utterance at a time, unpadded: padding would change group-norm extractors
        x = torch.as_tensor(wav, dtype=torch.float32, device=self.cfg.device)[None]
        with torch.inference_mode():
            out = self.upstream(x, torch.tensor([x.shape[1]], device=x.device))
        layer = self.cfg.layer
        if not 0 <= layer < len(out.hidden_states):
            raise ValueError(
                f"layer {layer} requested, the upstream {self.cfg.upstream} has hidden states "
                f"0..{len(out.hidden_states) - 1}"
            )
        self.rate = MFCC_CONFIG.sample_rate / float(out.stride)
        n = int(out.lengths[0])
        return out.hidden_states[layer][0, :n].float().cpu()


def sample_utterances(utts: list[str], percent: float, min_utts: int, seed: int) -> list[str]:
    """ceil(len * percent) utterances (at least ``min_utts``) without replacement, as fairseq's
    ``learn_kmeans.py``; returned in the input order."""
    if percent <= 0 or percent >= 1:
        return list(utts)
    n = min(len(utts), max(math.ceil(len(utts) * percent), min_utts))
    pick = np.random.default_rng(seed).choice(len(utts), size=n, replace=False)
    return [utts[i] for i in sorted(pick)]


def _read_features(
    data: DataDir, utts: list[str], reader: FeatureReader, log_every: int = 500
) -> list[torch.Tensor]:
    feats, start = [], time.time()
    for i, utt in enumerate(utts, 1):
        f = reader(data.load_audio(utt))
        if f.shape[0] == 0:
            raise DataDirError(f"utterance '{utt}': too short for one feature frame")
        feats.append(f)
        if i % log_every == 0:
            print(f"features: {i}/{len(utts)} utterances ({time.time() - start:.0f} s)")
    return feats


def fit_kmeans(
    data_dir: str | os.PathLike,
    km_dir: str | os.PathLike,
    cfg: KmeansConfig,
    upstream: torch.nn.Module | None = None,
) -> Path:
    """Fit MiniBatchKMeans on features of a sample of ``data_dir``; write ``centroids.npy`` and
    ``kmeans.yaml`` under ``km_dir`` (returned). ``upstream`` overrides loading ``cfg.upstream``."""
    from sklearn.cluster import MiniBatchKMeans

    data = DataDir.load(data_dir)
    utts = sample_utterances(data.utt_ids, cfg.percent, cfg.min_utts, cfg.seed)
    reader = FeatureReader(cfg, upstream)
    x = torch.cat(_read_features(data, utts, reader)).numpy().astype(np.float32)
    if x.shape[0] < cfg.n_clusters:
        raise DataDirError(
            f"{data_dir}: {x.shape[0]} frames from {len(utts)} utterances cannot make "
            f"{cfg.n_clusters} clusters; raise percent/min_utts or lower n_clusters"
        )
    print(f"k-means: {cfg.n_clusters} clusters on {x.shape[0]} x {x.shape[1]} frames")
    # the settings of fairseq's learn_kmeans.py (tol 0, no reassignment, labels not kept)
    km = MiniBatchKMeans(
        n_clusters=cfg.n_clusters,
        init="k-means++",
        max_iter=cfg.max_iter,
        batch_size=cfg.batch_size,
        tol=0.0,
        max_no_improvement=100,
        n_init=cfg.n_init,
        reassignment_ratio=0.0,
        compute_labels=False,
        init_size=None,
        random_state=cfg.seed,
    ).fit(x)
    centroids = torch.from_numpy(km.cluster_centers_.astype(np.float32))
    feats = torch.from_numpy(x)
    dist = _squared_distances(feats, centroids).min(dim=1).values
    km_dir = Path(km_dir)
    atomic_save_numpy(km_dir / "centroids.npy", centroids.numpy())
    info = asdict(cfg) | {
        "dim": int(x.shape[1]),
        "rate": reader.rate,
        "num_utts": len(utts),
        "num_frames": int(x.shape[0]),
        "inertia_per_frame": float(dist.mean()),
    }
    atomic_write_text(km_dir / "kmeans.yaml", yaml.safe_dump(info, sort_keys=False))
    print(f"k-means: mean squared distance {info['inertia_per_frame']:.4g}; wrote {km_dir}")
    return km_dir


def load_kmeans(km_dir: str | os.PathLike) -> tuple[torch.Tensor, KmeansConfig, dict]:
    """``(centroids (K, D), config, kmeans.yaml contents)`` of a fitted k-means dir."""
    km_dir = Path(km_dir)
    path = km_dir / "kmeans.yaml"
    if not path.is_file() or not (km_dir / "centroids.npy").is_file():
        raise FileNotFoundError(f"{km_dir}: no fitted k-means (kmeans.yaml, centroids.npy)")
    info = yaml.safe_load(path.read_text())
    cfg = KmeansConfig(**{f.name: info[f.name] for f in fields(KmeansConfig) if f.name in info})
    centroids = torch.from_numpy(np.load(km_dir / "centroids.npy", allow_pickle=False))
    return centroids, cfg, info


def _squared_distances(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """``(T, D), (K, D) -> (T, K)``: ||x||^2 - 2 x.c + ||c||^2."""
    return x.pow(2).sum(1, keepdim=True) - 2 * x @ centroids.T + centroids.pow(2).sum(1)[None, :]


def assign_labels(feats: torch.Tensor, centroids: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Nearest centroid of each frame: ``(T, D) -> (T,)`` long, in chunks of frames."""
    feats = feats.to(centroids.dtype)
    out = [
        _squared_distances(feats[i : i + chunk], centroids).argmin(dim=1)
        for i in range(0, feats.shape[0], chunk)
    ]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def shard_utterances(utts: list[str], job: int, nj: int) -> list[str]:
    """Contiguous shard ``job`` (1-based) of ``nj`` of the (C-sorted) utterance list."""
    if not 1 <= job <= nj:
        raise ValueError(f"job {job} is not in 1..{nj}")
    n = len(utts)
    return utts[(job - 1) * n // nj : job * n // nj]


def _write_labels_yaml(label_dir: Path, km_dir: Path, cfg: KmeansConfig, info: dict) -> None:
    meta = {
        "rate": float(info["rate"]),
        "source": "mfcc" if cfg.feature == "mfcc" else str(cfg.upstream),
        "layer": cfg.layer,
        "clusters": cfg.n_clusters,
        "kmeans": str(km_dir),
    }
    atomic_write_text(label_dir / "labels.yaml", yaml.safe_dump(meta, sort_keys=False))


def dump_labels(
    data_dir: str | os.PathLike,
    km_dir: str | os.PathLike,
    label_dir: str | os.PathLike,
    name: str | None = None,
    job: int = 1,
    nj: int = 1,
    upstream: torch.nn.Module | None = None,
    device: str | None = None,
) -> Path:
    """Label every utterance of shard ``job`` of ``nj`` of ``data_dir`` with the k-means of
    ``km_dir``. Writes ``<label_dir>/<name>.km`` (``nj == 1``) or ``<name>.km.<job>``; ``name``
    defaults to the data dir's folder name. A complete shard is skipped on rerun. ``device``
    overrides where the upstream runs (default: as when fitting)."""
    data = DataDir.load(data_dir)
    name = name or Path(data_dir).resolve().name
    label_dir, km_dir = Path(label_dir), Path(km_dir)
    out = label_dir / (f"{name}.km" if nj == 1 else f"{name}.km.{job}")
    centroids, cfg, info = load_kmeans(km_dir)
    if device is not None:
        cfg = replace(cfg, device=device)
    if out.is_file():
        print(f"{out}: complete already, skipping")
        return out
    if nj > 1:
        torch.set_num_threads(1)  # one core per job; parallelism comes from the jobs
    reader = FeatureReader(cfg, upstream)
    utts = shard_utterances(data.utt_ids, job, nj)
    labels = {}
    for utt, feats in zip(utts, _read_features(data, utts, reader)):
        if feats.shape[1] != centroids.shape[1]:
            raise ValueError(
                f"utterance '{utt}': features are {feats.shape[1]}-d, the k-means in {km_dir} "
                f"is {centroids.shape[1]}-d"
            )
        labels[utt] = assign_labels(feats, centroids).tolist()
    write_table(out, labels)
    if nj == 1:
        _write_labels_yaml(label_dir, km_dir, cfg, info)
    print(f"{out}: {len(labels)} utterances")
    return out


def merge_labels(
    label_dir: str | os.PathLike, name: str, nj: int, km_dir: str | os.PathLike
) -> Path:
    """Join the shards ``<name>.km.{1..nj}`` into ``<label_dir>/<name>.km`` + ``labels.yaml``
    (with ``nj == 1`` the dump wrote both already: nothing to do)."""
    label_dir = Path(label_dir)
    if nj == 1 and (label_dir / f"{name}.km").is_file():
        return label_dir / f"{name}.km"
    table: dict[str, str] = {}
    for job in range(1, nj + 1):
        part = label_dir / f"{name}.km.{job}"
        if not part.is_file():
            raise FileNotFoundError(f"{part}: job {job} of {nj} did not complete; rerun it")
        table.update(read_table(part))
    _, cfg, info = load_kmeans(km_dir)
    out = label_dir / f"{name}.km"
    write_table(out, table)
    _write_labels_yaml(label_dir, Path(km_dir), cfg, info)
    return out


def read_labels(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A ``.km`` table as ``{utt: (L,) long tensor}``."""
    return {
        utt: torch.tensor([int(v) for v in value.split()], dtype=torch.long)
        for utt, value in read_table(path).items()
    }
