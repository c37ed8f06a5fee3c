"""A disk cache of a frozen upstream's hidden states, so probes (and lr sweeps, and seeds) run
the upstream once per utterance instead of once per training step (s3prl #390, #431, #546).

One cache entry holds every utterance of one data dir for one upstream::

    <cache_root>/<key>/index.json          utt -> (shard, first frame, frames); L, D, stride
    <cache_root>/<key>/shard-00000.npy     (frames, L, D) float16, utterances end to end

``key`` hashes the upstream's identity (:func:`upstream_identity`: the spec's name and the
checkpoint's content hash, or the fbank configuration), the data dir's ``wav.scp`` and
``segments`` (plus the size and mtime of each audio file they name, so a re-rendered corpus with
the same ids is not mistaken for the old one), and the selected layers. An entry is built in a
temporary folder and renamed into place once complete, so a killed build leaves no entry that
looks finished. Shards are read memory-mapped. A shard that is missing, truncated or unreadable
when an entry is opened makes the entry be rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from speechssl.data.dataset import AudioDataset, LengthBucketSampler, collate
from speechssl.data.kaldi import DataDir, is_pipe
from speechssl.errors import SpeechSSLError
from speechssl.io import atomic_save_numpy, atomic_write_text
from speechssl.upstream import FbankUpstream, Upstream

CACHE_VERSION = 1
INDEX = "index.json"


class CacheError(SpeechSSLError, RuntimeError):
    """A cache entry cannot be used; the message names it and says what to do."""


@dataclass
class CacheStats:
    """Per run: utterances the upstream was run on, and utterances served from the cache."""

    forwards: int = 0
    hits: int = 0

    def __str__(self) -> str:
        return f"cache: {self.forwards} forwards, {self.hits} hits"


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def upstream_identity(spec: str | os.PathLike | None, upstream: Upstream | None = None) -> str:
    """What makes an upstream's hidden states what they are, as a string.

    ``fbank``: the feature configuration and CMVN flag; a file: its name and content hash; an HF
    folder: its name and the hashes of its config and weight files. An ``Upstream`` object with
    no spec: its class, its ``identity`` attribute if it has one, and a hash of its weights.
    """
    if spec is not None and str(spec) in ("fbank", "fbank_no_cmvn"):
        config = upstream.feature_config if isinstance(upstream, FbankUpstream) else None
        config_dict = asdict(config) if config is not None else {}
        return json.dumps({"spec": str(spec), "features": config_dict}, sort_keys=True)
    if spec is not None:
        path = Path(spec)
        if path.is_dir():
            files = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and (p.suffix in (".json", ".safetensors", ".bin"))
            )
            hashes = {p.name: file_sha256(p) for p in files}
            return json.dumps({"name": path.name, "files": hashes}, sort_keys=True)
        if path.is_file():
            return json.dumps({"name": path.name, "sha256": file_sha256(path)}, sort_keys=True)
        raise CacheError(f"upstream {str(spec)!r}: no such file or folder")
    if upstream is None:
        raise ValueError("upstream_identity needs a spec or an upstream")
    digest = hashlib.sha256()
    for name, tensor in sorted(upstream.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    extra = getattr(upstream, "identity", None)
    if isinstance(upstream, FbankUpstream):
        extra = extra or {"features": asdict(upstream.feature_config), "cmvn": upstream.cmvn}
    return json.dumps(
        {"class": type(upstream).__name__, "extra": extra, "weights": digest.hexdigest()},
        sort_keys=True,
        default=str,
    )


def data_identity(data_dir: str | os.PathLike) -> str:
    """``wav.scp`` and ``segments`` contents plus (size, mtime) of every audio file named."""
    data = DataDir.load(data_dir)
    digest = hashlib.sha256()
    for name in ("wav.scp", "segments"):
        if (data.path / name).is_file():
            digest.update(name.encode() + b"\0" + (data.path / name).read_bytes())
    for rec in sorted(data.wav_scp):
        entry = data.wav_scp[rec]
        if not is_pipe(entry):
            try:
                st = os.stat(data.resolve(entry))
                digest.update(f"{rec} {st.st_size} {st.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{rec} missing\n".encode())
    return digest.hexdigest()


def cache_key(upstream_id: str, data_dir: str | os.PathLike, layers: Sequence[int] | None) -> str:
    payload = json.dumps(
        {
            "version": CACHE_VERSION,
            "upstream": upstream_id,
            "data": data_identity(data_dir),
            "layers": list(layers) if layers is not None else None,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


class CachedHiddenStates:
    """An opened cache entry: ``hidden_states(utt) -> (T, L, D)`` float16 numpy (memory-mapped).

    Attributes: ``num_frames`` (utt -> T), ``num_hidden_states`` (L), ``dim`` (D), ``stride``.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        index_file = folder / INDEX
        try:
            index = json.loads(index_file.read_text())
        except (OSError, ValueError) as e:
            raise CacheError(f"{index_file}: cannot read the cache index ({e})") from None
        self.utts: dict[str, list[int]] = index["utts"]
        self.num_hidden_states = int(index["num_hidden_states"])
        self.dim = int(index["dim"])
        self.stride = int(index["stride"])
        self.layers = index.get("layers")
        self.num_frames = {u: int(v[2]) for u, v in self.utts.items()}
        self._shards = [self._open_shard(name, n) for name, n in index["shards"]]

    def _open_shard(self, name: str, frames: int) -> np.ndarray:
        path = self.folder / name
        try:
            shard = np.load(path, mmap_mode="r")
        except (OSError, ValueError, EOFError) as e:
            raise CacheError(
                f"{path}: unreadable cache shard ({type(e).__name__}: {e}); delete "
                f"{self.folder} to recompute it"
            ) from None
        expected = (frames, self.num_hidden_states, self.dim)
        if shard.shape != expected or shard.dtype != np.float16:
            raise CacheError(
                f"{path}: cache shard has shape {shard.shape} {shard.dtype}, the index expects "
                f"{expected} float16; delete {self.folder} to recompute it"
            )
        return shard

    def __contains__(self, utt: str) -> bool:
        return utt in self.utts

    def hidden_states(self, utt: str) -> np.ndarray:
        shard, start, frames = self.utts[utt]
        return self._shards[shard][start : start + frames]


def _write_shard(folder: Path, number: int, arrays: list[np.ndarray]) -> tuple[str, int]:
    name = f"shard-{number:05d}.npy"
    atomic_save_numpy(folder / name, np.concatenate(arrays, axis=0))
    return name, sum(a.shape[0] for a in arrays)


@torch.no_grad()
def _forward_all(
    upstream: Upstream,
    data_dir: Path,
    folder: Path,
    layers: Sequence[int] | None,
    device: torch.device,
    batch_seconds: float,
    shard_frames: int,
    stats: CacheStats,
) -> None:
    """Run ``upstream`` over every utterance of ``data_dir``; write shards and the index."""
    dataset = AudioDataset(data_dir, crop=None)
    sampler = LengthBucketSampler(
        dataset.durations, batch_seconds, shuffle=False, equal_per_rank=False
    )
    utts: dict[str, list[int]] = {}
    shards: list[tuple[str, int]] = []
    pending: list[np.ndarray] = []
    pending_frames, dims = 0, None
    for indices in sampler.rank_batches(0):
        batch = collate([dataset.load(i) for i in indices])
        out = upstream(batch.wavs.to(device), batch.lengths.to(device))
        states = out.hidden_states if layers is None else [out.hidden_states[k] for k in layers]
        stacked = torch.stack(states, dim=2).to("cpu", torch.float16)  # (B, T, L, D)
        dims = (len(states), stacked.shape[-1], int(out.stride))
        stats.forwards += len(batch)
        for b, utt in enumerate(batch.utt_ids):
            n = int(out.lengths[b])
            utts[utt] = [len(shards), pending_frames, n]
            pending.append(stacked[b, :n].numpy())
            pending_frames += n
        if pending_frames >= shard_frames:
            shards.append(_write_shard(folder, len(shards), pending))
            pending, pending_frames = [], 0
    if pending:
        shards.append(_write_shard(folder, len(shards), pending))
    if dims is None:
        raise CacheError(f"{data_dir}: no utterances to cache")
    index = {
        "version": CACHE_VERSION,
        "data_dir": str(data_dir),
        "layers": list(layers) if layers is not None else None,
        "num_hidden_states": dims[0],
        "dim": dims[1],
        "stride": dims[2],
        "shards": shards,
        "utts": utts,
    }
    atomic_write_text(folder / INDEX, json.dumps(index) + "\n")


def cached_hidden_states(
    upstream: Upstream,
    upstream_id: str,
    data_dir: str | os.PathLike,
    cache_root: str | os.PathLike,
    stats: CacheStats | None = None,
    layers: Sequence[int] | None = None,
    device: str | torch.device = "cpu",
    batch_seconds: float = 80.0,
    shard_frames: int = 100_000,
    log=None,
) -> CachedHiddenStates:
    """The hidden states of every utterance of ``data_dir``, from the cache or computed once.

    Args:
        upstream: a frozen upstream (run in eval mode, without gradients).
        upstream_id: :func:`upstream_identity` of it (part of the key).
        layers: hidden states to keep (None: all).
        batch_seconds: padded audio per upstream forward.
        shard_frames: frames per shard file (100k frames of 13 x 768 fp16 is ~2 GB).
    """
    stats = stats if stats is not None else CacheStats()
    data_dir = Path(data_dir)
    folder = Path(cache_root) / cache_key(upstream_id, data_dir, layers)
    if (folder / INDEX).is_file():
        try:
            cached = CachedHiddenStates(folder)
        except CacheError as e:
            if log:
                log(f"cache: {e}; recomputing")
            shutil.rmtree(folder, ignore_errors=True)
        else:
            missing = [u for u in DataDir.load(data_dir).utt_ids if u not in cached]
            if not missing:
                stats.hits += len(cached.utts)
                return cached
            if log:
                log(f"cache: {folder} lacks {len(missing)} utterances (e.g. {missing[0]}); redo")
            shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        was_training = upstream.training
        upstream.eval()
        _forward_all(
            upstream,
            data_dir,
            tmp,
            layers,
            torch.device(device),
            batch_seconds,
            shard_frames,
            stats,
        )
        upstream.train(was_training)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not folder.is_dir():
                raise
            # built meanwhile by another process (two probe jobs of one upstream): keep theirs;
            # testing first and renaming after left a window for exactly that race
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if log:
        log(f"cache: {data_dir} -> {folder}")
    return CachedHiddenStates(folder)
