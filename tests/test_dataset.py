"""AudioDataset, collate and LengthBucketSampler on small generated data dirs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_data_dir
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from speechssl.data.dataset import (
    AudioBatch,
    AudioDataset,
    BatchIndices,
    LengthBucketSampler,
    collate,
)
from speechssl.data.kaldi import DataDirError, write_table

STRIDE = 320  # samples per label at 50 labels/s


def conv_frames(n: int) -> int:
    """A wav2vec2-like feature encoder's frame count (receptive field 400, stride 320)."""
    return (n - 400) // STRIDE + 1


def write_labels(data: AudioDataset, path: Path, shorten: dict[str, int] | None = None) -> Path:
    """Label k at frame k of each utterance (so a crop's labels reveal its offset)."""
    table = {}
    for utt, n in zip(data.utt_ids, data.num_samples, strict=True):
        count = conv_frames(n) - (shorten or {}).get(utt, 0)
        table[utt] = list(range(count))
    write_table(path, table)
    return path


def full_wav(data: AudioDataset, index: int) -> torch.Tensor:
    return data.load(index).wav


def find_offset(whole: torch.Tensor, part: torch.Tensor) -> int:
    for offset in range(len(whole) - len(part) + 1):
        if torch.equal(whole[offset : offset + len(part)], part):
            return offset
    raise AssertionError("crop is not a slice of the utterance")


def test_dataset_reads_data_dir(data_dir: Path) -> None:
    data = AudioDataset(data_dir, crop=None)
    assert len(data) == 12 and data.utt_ids == sorted(data.utt_ids)
    item = data[3]
    assert item.wav.dtype == torch.float32 and item.labels is None
    assert abs(len(item.wav) - data.num_samples[3]) <= 8  # utt2dur keeps milliseconds
    (data_dir / "utt2dur").unlink()
    from_headers = AudioDataset(data_dir, crop=None)
    assert from_headers.num_samples[3] == len(item.wav)


def test_collate_pads() -> None:
    from speechssl.data.dataset import AudioItem

    items = [
        AudioItem("a", torch.ones(5), torch.tensor([1, 2])),
        AudioItem("b", torch.ones(3), torch.tensor([3])),
    ]
    batch = collate(items)
    assert batch.wavs.shape == (2, 5) and batch.wavs[1, 3:].eq(0).all()
    assert batch.lengths.tolist() == [5, 3] and batch.utt_ids == ["a", "b"]
    assert batch.labels.tolist() == [[1, 2], [3, -100]] and batch.label_lengths.tolist() == [2, 1]
    moved = batch.to("cpu")
    assert isinstance(moved, AudioBatch) and torch.equal(moved.wavs, batch.wavs)


def test_random_crop_to_shortest_is_a_seeded_slice(data_dir: Path) -> None:
    data = AudioDataset(data_dir, crop="random", max_samples=6000)
    indices = BatchIndices([0, 5, 7], seed=11)
    items = data.__getitems__(indices)
    target = min(min(len(full_wav(data, i)) for i in indices), 6000)
    assert {len(it.wav) for it in items} == {target}
    for i, it in zip(indices, items, strict=True):
        find_offset(full_wav(data, i), it.wav)
    again = data.__getitems__(BatchIndices([0, 5, 7], seed=11))
    assert all(torch.equal(a.wav, b.wav) for a, b in zip(items, again, strict=True))
    other = data.__getitems__(BatchIndices([0, 5, 7], seed=12))
    assert not all(torch.equal(a.wav, b.wav) for a, b in zip(items, other, strict=True))
    start = AudioDataset(data_dir, crop="start").__getitems__(indices)
    assert all(find_offset(full_wav(data, i), it.wav) == 0 for i, it in zip(indices, start))


def test_labels_cropped_consistently(data_dir: Path, tmp_path: Path) -> None:
    plain = AudioDataset(data_dir, crop=None)
    labels = write_labels(plain, tmp_path / "train.km")
    data = AudioDataset(
        data_dir, labels, crop="random", max_samples=5000, label_rate=50, num_frames=conv_frames
    )
    for seed in range(5):
        indices = BatchIndices([1, 4, 9, 10], seed=seed)
        batch = collate(data.__getitems__(indices))
        for b, i in enumerate(indices):
            offset = find_offset(full_wav(data, i), batch.wavs[b, : batch.lengths[b]])
            assert offset % STRIDE == 0
            got = batch.labels[b, : batch.label_lengths[b]]
            first = offset // STRIDE
            expected = torch.arange(first, first + conv_frames(int(batch.lengths[b])))
            assert torch.equal(got, expected)


def test_label_count_mismatch_names_the_utterance(data_dir: Path, tmp_path: Path) -> None:
    plain = AudioDataset(data_dir, crop=None)
    bad = plain.utt_ids[6]
    labels = write_labels(plain, tmp_path / "bad.km", shorten={bad: 5})
    with pytest.raises(DataDirError) as err:
        AudioDataset(data_dir, labels, label_rate=50, num_frames=conv_frames)
    message = str(err.value)
    n = plain.num_samples[6]
    assert bad in message and str(conv_frames(n) - 5) in message and str(conv_frames(n)) in message
    assert "label_rate" in message
    # a 1-frame difference is within the tolerance
    ok = write_labels(plain, tmp_path / "ok.km", shorten={bad: 1})
    AudioDataset(data_dir, ok, label_rate=50, num_frames=conv_frames)
    # labels at another rate (100 Hz vs 50 Hz frames) are caught
    with pytest.raises(DataDirError, match="frames at 100 labels/s"):
        AudioDataset(data_dir, ok, label_rate=100)


def test_missing_labels_and_rate(data_dir: Path, tmp_path: Path) -> None:
    plain = AudioDataset(data_dir, crop=None)
    path = write_labels(plain, tmp_path / "some.km")
    table = path.read_text().splitlines()
    path.write_text("\n".join(table[:-1]) + "\n")
    with pytest.raises(DataDirError, match=plain.utt_ids[-1]):
        AudioDataset(data_dir, path, label_rate=50, num_frames=conv_frames)
    with pytest.raises(ValueError, match="label_rate"):
        AudioDataset(data_dir, path)
    with pytest.raises(ValueError, match="max_samples"):
        AudioDataset(data_dir, crop=None, max_samples=100)


def test_dataloader_workers_give_the_same_crops(tmp_path: Path) -> None:
    data = AudioDataset(make_data_dir(tmp_path / "d"), crop="random", max_samples=7000)
    sampler = LengthBucketSampler(data.durations, max_batch_seconds=2.0, seed=3)
    direct = [collate(data.__getitems__(b)) for b in sampler.rank_batches(0)]
    sampler.set_epoch(0)
    loader = DataLoader(data, batch_sampler=sampler, collate_fn=collate, num_workers=1)
    for a, b in zip(direct, loader, strict=True):
        assert a.utt_ids == b.utt_ids and torch.equal(a.wavs, b.wavs)


# ---- sampler ------------------------------------------------------------------------------


def durations_of(n: int, seed: int = 0) -> list[float]:
    return np.random.default_rng(seed).uniform(0.5, 10.0, n).round(2).tolist()


@settings(max_examples=40, deadline=None)
@given(
    durations=st.lists(st.floats(0.1, 20.0), min_size=1, max_size=60),
    cap=st.floats(5.0, 60.0),
    size=st.one_of(st.none(), st.integers(1, 8)),
    epoch=st.integers(0, 3),
)
def test_sampler_covers_each_utterance_once_within_caps(durations, cap, size, epoch) -> None:
    sampler = LengthBucketSampler(durations, cap, size, seed=1)
    sampler.set_epoch(epoch)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(durations)))
    for b in batches:
        assert size is None or len(b) <= size
        assert len(b) == 1 or len(b) * max(durations[i] for i in b) <= cap
    assert sampler.epoch == epoch + 1 and sampler.batches_done == 0


def test_sampler_deterministic_and_shuffled_per_epoch() -> None:
    durs = durations_of(50)
    a, b = LengthBucketSampler(durs, 30.0, seed=5), LengthBucketSampler(durs, 30.0, seed=5)
    assert a.rank_batches(0) == b.rank_batches(0)
    assert [x.seed for x in a.rank_batches(0)] == [x.seed for x in b.rank_batches(0)]
    assert a.rank_batches(0) != a.rank_batches(1)
    assert LengthBucketSampler(durs, 30.0, seed=6).rank_batches(0) != a.rank_batches(0)
    ordered = LengthBucketSampler(durs, 30.0, shuffle=False).rank_batches(0)
    flat = [durs[i] for batch in ordered for i in batch]
    assert flat == sorted(flat)


def test_sampler_long_utterance_gets_its_own_batch() -> None:
    batches = LengthBucketSampler([1.0, 1.0, 50.0], 10.0).rank_batches(0)
    assert sorted(map(sorted, batches)) == [[0, 1], [2]]


@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_ranks(drop_last: bool) -> None:
    durs = durations_of(37)
    ranks = [
        LengthBucketSampler(durs, 20.0, seed=2, num_replicas=3, rank=r, drop_last=drop_last)
        for r in range(3)
    ]
    per_rank = [list(s) for s in ranks]
    assert len({len(b) for b in per_rank}) == 1 and all(len(b) == len(ranks[0]) for b in per_rank)
    total = ranks[0].num_batches
    assert total % 3 != 0  # the padding/dropping path is exercised
    seen = [i for batches in per_rank for b in batches for i in b]
    if drop_last:
        assert len(seen) == len(set(seen))  # disjoint
    else:
        assert set(seen) == set(range(len(durs)))  # everything, a few batches twice
    uneven = [
        list(LengthBucketSampler(durs, 20.0, seed=2, num_replicas=3, rank=r, equal_per_rank=False))
        for r in range(3)
    ]
    flat = [i for batches in uneven for b in batches for i in b]
    assert sorted(flat) == list(range(len(durs)))


def test_sampler_state_dict_resumes_at_next_batch() -> None:
    durs = durations_of(40)
    sampler = LengthBucketSampler(durs, 25.0, seed=4)
    sampler.set_epoch(2)
    full = sampler.rank_batches(2)
    it = iter(sampler)
    for _ in range(3):
        next(it)
    state = sampler.state_dict()
    assert state["epoch"] == 2 and state["batches_done"] == 3
    resumed = LengthBucketSampler(durs, 25.0, seed=4)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert rest == full[3:] and [b.seed for b in rest] == [b.seed for b in full[3:]]
    # a completed epoch resumes at the next epoch's first batch
    resumed.load_state_dict({"epoch": 2, "batches_done": len(full)})
    assert resumed.epoch == 3 and next(iter(resumed)) == sampler.rank_batches(3)[0]
