"""Waveform datasets, length-bucketed batch sampling and collation for training.

``AudioDataset`` reads a Kaldi data dir (and optionally a frame-label table such as HuBERT's
``<utt> l1 l2 ...`` k-means labels), ``LengthBucketSampler`` groups utterances of similar length
into batches capped in audio seconds, and ``collate`` pads a batch into an ``AudioBatch``.

Randomness never comes from global RNG state: the sampler's order is a function of
``(seed, epoch)`` and every batch it yields carries a seed (``BatchIndices.seed``) from which the
dataset draws its crop offsets. So a run resumed from a checkpoint sees the very same batches and
crops as an uninterrupted one, whatever the number of DataLoader workers.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from speechssl.data.audio import SAMPLE_RATE
from speechssl.data.kaldi import DataDir, DataDirError, is_pipe, read_table

IGNORE_LABEL = -100  # label padding; ignored by cross-entropy's default ignore_index


@dataclass
class AudioBatch:
    """A padded batch of waveforms.

    wavs: ``(B, S)`` float32, zero-padded after each utterance's ``lengths[b]`` samples.
    lengths: ``(B,)`` long, samples per utterance.
    utt_ids: the utterance ids, in batch order.
    labels: ``(B, L)`` long frame labels padded with -100, or None.
    label_lengths: ``(B,)`` long, labels per utterance, or None.
    speakers: each utterance's speaker (``utt2spk``), in batch order, or None.
    weights: ``(B,)`` float per-utterance loss weights (pseudo-label confidences), or None.
    soft_targets: ``(B, T, V)`` float frame posteriors to distil toward (self-training's soft
        targets), zero-padded, or None; ``soft_lengths`` ``(B,)`` their frames (0: none for that
        utterance); ``soft_weights`` ``(B,)`` the distillation term's weight per utterance.
    """

    wavs: torch.Tensor
    lengths: torch.Tensor
    utt_ids: list[str]
    labels: torch.Tensor | None = None
    label_lengths: torch.Tensor | None = None
    speakers: list[str] | None = None
    weights: torch.Tensor | None = None
    soft_targets: torch.Tensor | None = None
    soft_lengths: torch.Tensor | None = None
    soft_weights: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.utt_ids)

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> AudioBatch:
        return AudioBatch(
            wavs=fn(self.wavs),
            lengths=fn(self.lengths),
            utt_ids=list(self.utt_ids),
            labels=None if self.labels is None else fn(self.labels),
            label_lengths=None if self.label_lengths is None else fn(self.label_lengths),
            speakers=None if self.speakers is None else list(self.speakers),
            weights=None if self.weights is None else fn(self.weights),
            soft_targets=None if self.soft_targets is None else fn(self.soft_targets),
            soft_lengths=None if self.soft_lengths is None else fn(self.soft_lengths),
            soft_weights=None if self.soft_weights is None else fn(self.soft_weights),
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> AudioBatch:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> AudioBatch:
        """Called by DataLoader(pin_memory=True) for faster host-to-GPU copies."""
        return self._map(lambda t: t.pin_memory())


@dataclass
class AudioItem:
    """One (possibly cropped) utterance: ``wav`` ``(S,)`` float32, ``labels`` ``(L,)`` long."""

    utt_id: str
    wav: torch.Tensor
    labels: torch.Tensor | None = None
    speaker: str | None = None
    weight: float | None = None  # loss weight (a pseudo-label's confidence)
    soft: torch.Tensor | None = None  # (T, V) frame posteriors to distil toward
    soft_weight: float = 0.0  # weight of the distillation term


def collate(items: Sequence[AudioItem]) -> AudioBatch:
    """Pad ``items`` into an ``AudioBatch`` (zeros after the waveforms, -100 after the labels)."""
    if not items:
        raise ValueError("collate: empty batch")
    lengths = torch.tensor([len(it.wav) for it in items], dtype=torch.long)
    wavs = torch.zeros(len(items), int(lengths.max()), dtype=torch.float32)
    for b, it in enumerate(items):
        wavs[b, : len(it.wav)] = it.wav
    labels = label_lengths = None
    if items[0].labels is not None:
        label_lengths = torch.tensor([len(it.labels) for it in items], dtype=torch.long)
        labels = torch.full((len(items), int(label_lengths.max())), IGNORE_LABEL, dtype=torch.long)
        for b, it in enumerate(items):
            labels[b, : len(it.labels)] = it.labels
    speakers = None
    if all(it.speaker is not None for it in items):
        speakers = [str(it.speaker) for it in items]
    weights = None
    if all(it.weight is not None for it in items):
        weights = torch.tensor([float(it.weight) for it in items], dtype=torch.float32)
    ids = [it.utt_id for it in items]
    batch = AudioBatch(wavs, lengths, ids, labels, label_lengths, speakers, weights)
    softs = [it.soft for it in items]
    if any(s is not None for s in softs):
        vocab = next(s.shape[1] for s in softs if s is not None)
        batch.soft_lengths = torch.tensor([0 if s is None else len(s) for s in softs])
        batch.soft_targets = torch.zeros(len(items), int(batch.soft_lengths.max()), vocab)
        for b, s in enumerate(softs):
            if s is not None:
                batch.soft_targets[b, : len(s)] = s
        batch.soft_weights = torch.tensor([float(it.soft_weight) for it in items])
    return batch


class BatchIndices(list):
    """Dataset indices of one batch, plus ``seed`` for the batch's random choices (crop offsets,
    augmentation). A plain list to any dataset that does not look at the seed."""

    def __init__(self, indices: Sequence[int], seed: int):
        super().__init__(indices)
        self.seed = seed


class AudioDataset(Dataset):
    """Utterances of a Kaldi data dir as float32 waveforms, optionally with frame labels.

    Args:
        data_dir: a Kaldi data dir (``wav.scp``, ``utt2spk``, optional ``segments``, ``utt2dur``).
            Lengths come from ``utt2dur`` when present, else from the audio files' headers.
        label_file: a ``<utt> l1 l2 ...`` table of integer frame labels (e.g. HuBERT k-means
            targets); needs ``label_rate``.
        label_rate: labels per second (100 for MFCC k-means labels, 50 for a 320-sample stride).
        num_frames: number of labels expected for ``n`` samples (e.g. the feature extractor's
            ``num_frames``); default ``floor(n * label_rate / sample_rate)``.
        label_tolerance: how many labels the count may differ from ``num_frames`` (edge effects).
        crop: how a batch is cut to one length (wav2vec 2.0 pretraining): ``"random"`` crops every
            utterance to the batch's shortest (and to ``max_samples``) at a random offset drawn
            from the batch seed; ``"start"`` keeps the first samples; ``None`` pads instead.
            With labels, offsets fall on label-frame boundaries so labels are cut consistently.
        max_samples: crop utterances to at most this many samples (needs ``crop``).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        label_file: str | os.PathLike | None = None,
        sample_rate: int = SAMPLE_RATE,
        max_samples: int | None = None,
        crop: str | None = "random",
        label_rate: float | None = None,
        num_frames: Callable[[int], int] | None = None,
        label_tolerance: int = 2,
    ):
        if crop not in ("random", "start", None):
            raise ValueError(f"crop must be 'random', 'start' or None, not {crop!r}")
        if max_samples is not None and crop is None:
            raise ValueError("max_samples needs crop='random' or 'start' (crop=None pads)")
        self.data = DataDir.load(data_dir)
        self.sample_rate = sample_rate
        self.max_samples = max_samples
        self.crop = crop
        self.utt_ids = self.data.utt_ids
        self.num_samples = self._lengths()
        self.labels: dict[str, torch.Tensor] | None = None
        self.label_rate = label_rate
        self.label_tolerance = label_tolerance
        if label_file is not None:
            if label_rate is None:
                raise ValueError(f"{label_file}: label_rate (labels per second) is required")
            self.num_frames = num_frames or (lambda n: int(n * label_rate // sample_rate))
            self.labels = self._read_labels(Path(label_file))

    @property
    def durations(self) -> list[float]:
        """Seconds per utterance as batched: clipped to ``max_samples`` when cropping. This is what
        ``LengthBucketSampler`` should get."""
        cap = self.max_samples or max(self.num_samples, default=0)
        return [min(n, cap) / self.sample_rate for n in self.num_samples]

    def __len__(self) -> int:
        return len(self.utt_ids)

    def _lengths(self) -> list[int]:
        durs = self.data.durations()
        if durs is not None:
            missing = [u for u in self.utt_ids if u not in durs]
            if missing:
                raise DataDirError(
                    f"{self.data.path}/utt2dur: no duration for {len(missing)} utterance(s), "
                    f"e.g. '{missing[0]}'; regenerate utt2dur or delete it"
                )
            return [round(durs[u] * self.sample_rate) for u in self.utt_ids]
        return [self._length_from_header(u) for u in self.utt_ids]

    def _length_from_header(self, utt: str) -> int:
        entry, start, end = self.data.audio_source(utt)
        if end is not None:
            return round((end - start) * self.sample_rate)
        if is_pipe(entry):
            raise DataDirError(
                f"{self.data.path}: utterance '{utt}' is a wav.scp pipe and there is no utt2dur; "
                "write utt2dur (seconds per utterance) into the data dir"
            )
        path = self.data.resolve(entry)
        try:
            info = sf.info(path)
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise DataDirError(
                f"utterance '{utt}' ({path}): cannot read audio header: {e}"
            ) from None
        return round(info.frames * self.sample_rate / info.samplerate)

    def _read_labels(self, path: Path) -> dict[str, torch.Tensor]:
        table = read_table(path)
        missing = [u for u in self.utt_ids if u not in table]
        if missing:
            raise DataDirError(
                f"{path}: no labels for {len(missing)} of {len(self.utt_ids)} utterances of "
                f"{self.data.path}, e.g. '{missing[0]}'; dump labels for this data dir again, or "
                "subset the data dir to the labelled utterances (`speechssl data subset`)"
            )
        labels = {}
        for utt, n in zip(self.utt_ids, self.num_samples, strict=True):
            try:
                labels[utt] = torch.tensor([int(v) for v in table[utt].split()], dtype=torch.long)
            except ValueError:
                raise DataDirError(
                    f"{path}: labels of '{utt}' are not all integers: '{table[utt][:60]}'"
                ) from None
            self._check_label_count(path, utt, len(labels[utt]), n)
        return labels

    def _check_label_count(self, path: Path | str, utt: str, found: int, samples: int) -> None:
        expected = self.num_frames(samples)
        if abs(found - expected) > self.label_tolerance:
            raise DataDirError(
                f"{path}: utterance '{utt}' has {found} labels but its {samples} samples give "
                f"{expected} frames at {self.label_rate:g} labels/s (tolerance "
                f"{self.label_tolerance}); the labels were made at another frame rate or from "
                "other audio: check label_rate / num_frames, or dump the labels again"
            )

    def load(self, index: int) -> AudioItem:
        """Utterance ``index`` uncropped."""
        utt = self.utt_ids[index]
        wav = torch.from_numpy(self.data.load_audio(utt, sample_rate=self.sample_rate))
        labels = None
        if self.labels is not None:
            labels = self.labels[utt]
            self._check_label_count(f"labels of {self.data.path}", utt, len(labels), len(wav))
        return AudioItem(utt, wav, labels, self.data.utt2spk.get(utt))

    def __getitem__(self, index: int) -> AudioItem:
        """One utterance, cropped to ``max_samples`` (offset seeded by the index) if cropping."""
        return self.__getitems__(BatchIndices([index], seed=index))[0]

    def __getitems__(self, indices: Sequence[int]) -> list[AudioItem]:
        """The items of one batch, cropped to a common length when ``crop`` is set; offsets are
        drawn from ``indices.seed`` (``BatchIndices``), else from the indices themselves."""
        items = [self.load(i) for i in indices]
        if self.crop is None:
            return items
        target = min(len(it.wav) for it in items)
        if self.max_samples is not None:
            target = min(target, self.max_samples)
        seed = getattr(indices, "seed", None)
        rng = np.random.default_rng([0 if seed is None else seed, *indices])
        return [self._crop(it, target, rng) for it in items]

    def _crop(self, item: AudioItem, target: int, rng: np.random.Generator) -> AudioItem:
        excess = len(item.wav) - target
        if item.labels is None:
            offset = int(rng.integers(0, excess + 1)) if self.crop == "random" else 0
            return AudioItem(item.utt_id, item.wav[offset : offset + target], None, item.speaker)
        # Start on a label-frame boundary so frame k of the crop is frame first + k of the whole.
        samples_per_label = self.sample_rate / self.label_rate
        first = 0
        if self.crop == "random":
            first = int(rng.integers(0, int(excess // samples_per_label) + 1))
        offset = round(first * samples_per_label)
        labels = item.labels[first : first + self.num_frames(target)]
        return AudioItem(item.utt_id, item.wav[offset : offset + target], labels, item.speaker)


class LengthBucketSampler:
    """Batches of similar-length utterances, each at most ``max_batch_seconds`` of padded audio.

    The cap counts the padded size, ``len(batch) * longest duration`` (with the dataset's
    ``durations``, already clipped to ``max_samples`` when cropping; cropping to the shortest
    only makes a batch smaller). An utterance longer than the cap forms a batch of its own.

    Per epoch: utterances are shuffled (if ``shuffle``) and stably sorted by duration, so ties
    change places between epochs; consecutive ones are packed greedily; then the batch order is
    shuffled. All of it is seeded by ``(seed, epoch)``. For DDP every rank builds the same list
    and takes every ``num_replicas``-th batch from ``rank``; the list is padded by repeating its
    first batches (or, with ``drop_last``, cut) so all ranks get ``len(self)`` batches.
    ``equal_per_rank=False`` neither pads nor cuts (for evaluation, where every utterance must
    count once).

    Iterating yields the batches of ``self.epoch`` from ``self.batches_done`` on, then moves to
    the next epoch; ``state_dict``/``load_state_dict`` save and restore that position.
    """

    def __init__(
        self,
        durations: Sequence[float],
        max_batch_seconds: float,
        max_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
        equal_per_rank: bool = True,
    ):
        if max_batch_seconds <= 0:
            raise ValueError(f"max_batch_seconds must be > 0, got {max_batch_seconds}")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, num_replicas={num_replicas})")
        self.durations = np.asarray(durations, dtype=np.float64)
        self.max_batch_seconds = max_batch_seconds
        self.max_batch_size = max_batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        self.equal_per_rank = equal_per_rank
        self.epoch = 0
        self.batches_done = 0
        # Packing depends only on the sorted durations, so every epoch has this many batches.
        self.num_batches = len(self._pack(np.argsort(self.durations, kind="stable")))

    def _pack(self, order: np.ndarray) -> list[list[int]]:
        """Greedily pack utterances, in ``order`` (ascending duration), under the caps."""
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0.0
        for i in order.tolist():
            longest_with_i = max(longest, self.durations[i])
            full = self.max_batch_size is not None and len(current) >= self.max_batch_size
            if current and (full or (len(current) + 1) * longest_with_i > self.max_batch_seconds):
                batches.append(current)
                current, longest_with_i = [], self.durations[i]
            current.append(i)
            longest = longest_with_i
        if current:
            batches.append(current)
        return batches

    def epoch_batches(self, epoch: int) -> list[BatchIndices]:
        """All ranks' batches of ``epoch``, before dealing them out, each with its seed."""
        order = np.arange(len(self.durations))
        rng = np.random.default_rng([self.seed, epoch])
        if self.shuffle:
            order = rng.permutation(len(self.durations))
        order = order[np.argsort(self.durations[order], kind="stable")]
        batches = self._pack(order)
        if self.shuffle:
            batches = [batches[k] for k in rng.permutation(len(batches))]
        return [
            BatchIndices(
                b, seed=int(np.random.SeedSequence([self.seed, epoch, k]).generate_state(1)[0])
            )
            for k, b in enumerate(batches)
        ]

    def rank_batches(self, epoch: int) -> list[BatchIndices]:
        """This rank's batches of ``epoch``."""
        batches = self.epoch_batches(epoch)
        if self.equal_per_rank and len(batches) % self.num_replicas:
            if self.drop_last:
                batches = batches[: len(batches) - len(batches) % self.num_replicas]
            else:
                extra = self.num_replicas - len(batches) % self.num_replicas
                batches = batches + (batches * extra)[:extra]
        return batches[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        n, r = self.num_batches, self.num_replicas
        if not self.equal_per_rank:
            return len(range(self.rank, n, r))
        return n // r if self.drop_last else -(-n // r)

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch."""
        self.epoch = epoch
        self.batches_done = 0

    def __iter__(self) -> Iterator[BatchIndices]:
        batches = self.rank_batches(self.epoch)
        for k in range(self.batches_done, len(batches)):
            self.batches_done = k + 1
            yield batches[k]
        self.set_epoch(self.epoch + 1)

    def state_dict(self) -> dict[str, int | float | bool]:
        return {
            "epoch": self.epoch,
            "batches_done": self.batches_done,
            "seed": self.seed,
            "num_replicas": self.num_replicas,
            "num_batches": self.num_batches,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue at the batch after ``state["batches_done"]`` of ``state["epoch"]`` (the next
        epoch's first when that epoch was complete)."""
        self.epoch, self.batches_done = int(state["epoch"]), int(state["batches_done"])
        old_replicas = int(state.get("num_replicas", self.num_replicas))
        if old_replicas != self.num_replicas:
            # Every rank walks the same global list, so convert the position through it.
            self.batches_done = self.batches_done * old_replicas // self.num_replicas
        for key in ("seed", "num_batches"):
            if key in state and state[key] != getattr(self, key):
                warnings.warn(
                    f"sampler state has {key}={state[key]} but this sampler has "
                    f"{getattr(self, key)} (data, batch size or seed changed): the rest of epoch "
                    f"{self.epoch} cannot be replayed, continuing with epoch {self.epoch + 1}",
                    stacklevel=2,
                )
                self.batches_done = len(self)
        if self.batches_done >= len(self):
            self.set_epoch(self.epoch + 1)
