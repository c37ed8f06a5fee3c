"""The features stage: features of a data directory stored as Kaldi ark/scp, in sharded jobs.

A recipe runs ``compute_job`` once per shard of ``<data>/split<N>/<JOB>`` (one log per job),
then ``merge_jobs`` writes ``feats.scp``, ``utt2num_frames``, ``frame_shift`` and ``feats.yaml``
into the data directory, and ``compute_cmvn`` the statistics. A job's scp is written last,
atomically, so it marks the job complete; a rerun skips complete jobs.

``feats.scp`` entries are ``<utt> <ark path relative to the data dir>:<byte offset>`` (a job's own
scp names its ark relative to the feature dir).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import kaldiio
import numpy as np
import torch

from speechssl.config import from_dict, save_config
from speechssl.data.kaldi import DataDir, DataDirError, c_sorted, read_table, write_table
from speechssl.features import cmvn
from speechssl.features.extract import FeatureConfig, compute_features
from speechssl.io import atomic_path, atomic_write_text, temp_path


def feature_name(data_dir: str | os.PathLike, data_root: str | os.PathLike) -> str:
    """``data/asr/train`` under ``data`` -> ``asr_train``: the data dir's feature folder name."""
    rel = Path(os.path.relpath(Path(data_dir).resolve(), Path(data_root).resolve()))
    if rel.parts and rel.parts[0] == "..":
        raise ValueError(f"{data_dir} is not under the data root {data_root}")
    return "_".join(rel.parts) or Path(data_dir).resolve().name


def _job_paths(feat_dir: Path, name: str, job: int | str) -> tuple[Path, Path, Path]:
    stem = f"raw_{name}.{job}"
    return feat_dir / f"{stem}.ark", feat_dir / f"{stem}.scp", feat_dir / f"{stem}.num_frames"


def compute_job(
    data_dir: str | os.PathLike,
    feat_dir: str | os.PathLike,
    cfg: FeatureConfig,
    name: str,
    job: int | str = 1,
) -> Path:
    """Compute features for every utterance of ``data_dir`` (usually one shard) into
    ``<feat_dir>/raw_<name>.<job>.ark`` + ``.scp``; returns the scp path."""
    torch.set_num_threads(1)  # one core per job; parallelism comes from the jobs
    data = DataDir.load(data_dir)
    feat_dir = Path(feat_dir).resolve()
    feat_dir.mkdir(parents=True, exist_ok=True)
    ark, scp, num_frames = _job_paths(feat_dir, name, job)
    if scp.is_file() and num_frames.is_file():
        if set(read_table(scp)) == set(data.utt_ids):
            print(f"{scp}: complete already, skipping")
            return scp
        # left by an earlier version of the data dir (re-rendered, subset): not this job's
        print(f"{scp}: other utterances than {data.path}, recomputing")
    frames: dict[str, int] = {}
    start, seconds = time.time(), 0.0
    with temp_path(scp) as tmp_scp:
        with (
            atomic_path(ark) as tmp_ark,
            kaldiio.WriteHelper(f"ark,scp:{tmp_ark},{tmp_scp}") as writer,
        ):
            for utt in data.utt_ids:
                wav = data.load_audio(utt, sample_rate=cfg.sample_rate)
                feats = compute_features(wav, cfg).numpy()
                if feats.shape[0] == 0:
                    raise DataDirError(
                        f"utterance '{utt}': {len(wav)} samples is shorter than one frame "
                        f"({cfg.frame_length_ms} ms); drop it with `speechssl data subset`"
                    )
                if not np.isfinite(feats).all():
                    raise DataDirError(f"utterance '{utt}': features contain NaN/Inf")
                writer(utt, feats)
                frames[utt] = feats.shape[0]
                seconds += len(wav) / cfg.sample_rate
        # the job's scp names its ark relative to the feature dir, so the folder can move
        offsets = {u: e.rpartition(":")[2] for u, e in read_table(tmp_scp).items()}
    write_table(num_frames, frames)
    write_table(scp, {u: f"{ark.name}:{offset}" for u, offset in offsets.items()})
    took = time.time() - start
    print(f"{name} job {job}: {len(frames)} utterances, {seconds:.1f} s of audio in {took:.1f} s")
    return scp


def merge_jobs(
    data_dir: str | os.PathLike,
    feat_dir: str | os.PathLike,
    cfg: FeatureConfig,
    name: str,
    nj: int,
) -> None:
    """Combine the jobs' outputs into the data directory's feats.scp and utt2num_frames."""
    data_dir, feat_dir = Path(data_dir), Path(feat_dir).resolve()
    data = DataDir.load(data_dir)
    feats_scp: dict[str, str] = {}
    frames: dict[str, str] = {}
    for job in range(1, nj + 1):
        _, scp, num_frames = _job_paths(feat_dir, name, job)
        if not scp.is_file():
            raise FileNotFoundError(f"{scp}: job {job} of {nj} did not complete; rerun the stage")
        for utt, entry in read_table(scp).items():
            path, _, offset = entry.rpartition(":")
            rel = os.path.relpath(feat_dir / path, data_dir.resolve())
            feats_scp[utt] = f"{rel}:{offset}"
        frames.update(read_table(num_frames))
    missing = set(data.utt2spk) - set(feats_scp)
    if missing:
        raise DataDirError(
            f"{data_dir}: {len(missing)} utterances have no features (e.g. "
            f"{c_sorted(missing)[0]}); check the job logs"
        )
    write_table(data_dir / "feats.scp", feats_scp)
    write_table(data_dir / "utt2num_frames", frames)
    atomic_write_text(data_dir / "frame_shift", f"{cfg.frame_shift_ms / 1000:g}\n")
    save_config(cfg, data_dir / "feats.yaml")


def feature_config(data_dir: str | os.PathLike) -> FeatureConfig:
    """The FeatureConfig the data directory's features were computed with."""
    import yaml

    path = Path(data_dir) / "feats.yaml"
    if not path.is_file():
        raise DataDirError(f"{data_dir}: no feats.yaml; run the features stage first")
    return from_dict(FeatureConfig, yaml.safe_load(path.read_text()), str(path))


def load_features(data_dir: str | os.PathLike, utt: str, entry: str | None = None) -> np.ndarray:
    """``(T, D)`` stored features of one utterance (no normalisation)."""
    data_dir = Path(data_dir)
    if entry is None:
        entry = read_table(data_dir / "feats.scp")[utt]
    path, _, offset = entry.rpartition(":")
    if not os.path.isabs(path):
        path = os.path.normpath(data_dir / path)
    try:
        feats = kaldiio.load_mat(f"{path}:{offset}")
    except (OSError, ValueError, EOFError) as e:
        raise DataDirError(
            f"utterance '{utt}': cannot read features at {path}:{offset}: {e}"
        ) from None
    if not np.isfinite(feats).all():
        raise DataDirError(f"utterance '{utt}': stored features contain NaN/Inf ({path})")
    return feats


def compute_cmvn(data_dir: str | os.PathLike, per_speaker: bool = True) -> None:
    """Write ``global_cmvn.ark`` (always) and, with ``per_speaker``, ``cmvn.ark``+``cmvn.scp``
    (keyed by speaker) into the data directory."""
    data_dir = Path(data_dir)
    data = DataDir.load(data_dir)
    scp = read_table(data_dir / "feats.scp")
    global_stats = None
    spk_stats: dict[str, np.ndarray] = {}
    for utt in data.utt_ids:
        feats = load_features(data_dir, utt, scp[utt])
        global_stats = cmvn.accumulate(feats, global_stats)
        spk = data.utt2spk[utt]
        spk_stats[spk] = cmvn.accumulate(feats, spk_stats.get(spk))
    with atomic_path(data_dir / "global_cmvn.ark") as tmp:
        kaldiio.save_ark(str(tmp), {"global": global_stats})
    if per_speaker:
        with temp_path(data_dir / "cmvn.scp") as tmp_scp:
            with (
                atomic_path(data_dir / "cmvn.ark") as tmp_ark,
                kaldiio.WriteHelper(f"ark,scp:{tmp_ark},{tmp_scp}") as writer,
            ):
                for spk in c_sorted(spk_stats):
                    writer(spk, spk_stats[spk])
            entries = {
                k: "cmvn.ark:" + v.rpartition(":")[2] for k, v in read_table(tmp_scp).items()
            }
        write_table(data_dir / "cmvn.scp", entries)


def load_cmvn(data_dir: str | os.PathLike, speaker: str | None = None) -> np.ndarray:
    """CMVN statistics: per speaker if ``speaker`` is given, else global."""
    data_dir = Path(data_dir)
    if speaker is None:
        path = data_dir / "global_cmvn.ark"
        if not path.is_file():
            raise DataDirError(f"{data_dir}: no global_cmvn.ark; run `speechssl features cmvn`")
        return next(iter(kaldiio.load_ark(str(path))))[1]
    entry = read_table(data_dir / "cmvn.scp").get(speaker)
    if entry is None:
        raise DataDirError(f"{data_dir}/cmvn.scp: no statistics for speaker '{speaker}'")
    path, _, offset = entry.rpartition(":")
    return kaldiio.load_mat(f"{data_dir / path}:{offset}")
