"""HuBERT k-means label stage: fit, dump (sharded and not), label/frame alignment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from speechssl.cli import command_main
from speechssl.data.kaldi import DataDir, read_table
from speechssl.features import compute_features
from speechssl.kmeans import (
    MFCC_CONFIG,
    KmeansConfig,
    assign_labels,
    dump_labels,
    fit_kmeans,
    load_kmeans,
    merge_labels,
    read_labels,
    sample_utterances,
    shard_utterances,
)
from speechssl.ssl.hubert import LabelAlignmentError, align_labels

main = command_main("kmeans")  # speechssl kmeans ARGV


@pytest.fixture
def fitted(data_dir: Path, tmp_path: Path) -> Path:
    cfg = KmeansConfig(n_clusters=8, percent=0.5, min_utts=4, n_init=2)
    return fit_kmeans(data_dir, tmp_path / "kmeans", cfg)


def test_fit_writes_centroids_and_settings(fitted: Path):
    centroids, cfg, info = load_kmeans(fitted)
    assert centroids.shape == (8, 39) and centroids.dtype == torch.float32
    assert torch.isfinite(centroids).all()
    assert cfg.n_clusters == 8 and cfg.feature == "mfcc"
    assert info["rate"] == 100.0 and info["dim"] == 39 and info["num_utts"] == 6
    # centroids are plain .npy, readable without pickle
    assert np.load(fitted / "centroids.npy", allow_pickle=False).shape == (8, 39)
    assert not list(fitted.glob(".*.tmp"))


def test_dump_labels_one_per_mfcc_frame(data_dir: Path, fitted: Path, tmp_path: Path):
    label_dir = tmp_path / "labels"
    out = dump_labels(data_dir, fitted, label_dir, name="train")
    assert out == label_dir / "train.km"
    lines = out.read_text().splitlines()
    data = DataDir.load(data_dir)
    assert [line.split()[0] for line in lines] == data.utt_ids  # C-sorted, every utterance
    labels = read_labels(out)
    used = set()
    for utt in data.utt_ids:
        frames = compute_features(data.load_audio(utt), MFCC_CONFIG).shape[0]
        assert labels[utt].shape == (frames,)
        assert 0 <= int(labels[utt].min()) and int(labels[utt].max()) < 8
        used |= set(labels[utt].tolist())
    assert len(used) > 1
    meta = yaml.safe_load((label_dir / "labels.yaml").read_text())
    assert meta == {
        "rate": 100.0,
        "source": "mfcc",
        "layer": None,
        "clusters": 8,
        "kmeans": str(fitted),
    }


def test_sharded_dump_equals_unsharded(data_dir: Path, fitted: Path, tmp_path: Path):
    whole = dump_labels(data_dir, fitted, tmp_path / "one", name="train")
    for job in (1, 2, 3):
        dump_labels(data_dir, fitted, tmp_path / "three", name="train", job=job, nj=3)
    merged = merge_labels(tmp_path / "three", "train", 3, fitted)
    assert merged.read_text() == whole.read_text()
    assert (tmp_path / "three" / "labels.yaml").is_file()


def test_merge_names_missing_job(data_dir: Path, fitted: Path, tmp_path: Path):
    dump_labels(data_dir, fitted, tmp_path / "l", name="train", job=1, nj=2)
    with pytest.raises(FileNotFoundError, match="job 2 of 2"):
        merge_labels(tmp_path / "l", "train", 2, fitted)


def test_assign_is_nearest_centroid():
    g = torch.Generator().manual_seed(0)
    feats, cents = torch.randn(300, 5, generator=g), torch.randn(7, 5, generator=g)
    expected = torch.cdist(feats, cents).argmin(1)
    assert torch.equal(assign_labels(feats, cents, chunk=64), expected)


def test_sampling_and_shards():
    utts = [f"u{i:02d}" for i in range(40)]
    picked = sample_utterances(utts, 0.1, 6, seed=0)
    assert len(picked) == 6 and picked == sorted(picked)
    assert picked == sample_utterances(utts, 0.1, 6, seed=0)
    assert len(sample_utterances(utts, 0.5, 1, seed=0)) == 20
    assert sample_utterances(utts, -1, 1, seed=0) == utts
    shards = [shard_utterances(utts, j, 3) for j in (1, 2, 3)]
    assert sum(shards, []) == utts


def test_align_labels_takes_every_second_label():
    labels = torch.arange(99)  # 100 Hz labels of ~1 s
    out = align_labels(labels, 100.0, 49, 50.0)
    assert torch.equal(out, torch.arange(0, 98, 2))
    # one model frame more than labels cover: ignored, not wrapped
    out = align_labels(torch.arange(10), 50.0, 11, 50.0)
    assert out[-1] == -100 and torch.equal(out[:10], torch.arange(10))


def test_align_labels_names_utterance_on_mismatch():
    with pytest.raises(LabelAlignmentError, match="utterance 'spk00-utt001'.*100 Hz"):
        align_labels(torch.zeros(300, dtype=torch.long), 100.0, 50, 50.0, utt="spk00-utt001")


def test_cli_fit_and_dump(data_dir: Path, tmp_path: Path):
    km = tmp_path / "km"
    assert main(["fit", str(data_dir), str(km), "--n-clusters", "4", "--n-init", "1"]) == 0
    assert main(["dump", str(data_dir), str(km), str(tmp_path / "lab")]) == 0
    table = read_table(tmp_path / "lab" / "data.km")
    assert len(table) == 12


def test_cli_bad_input_is_one_error_line(data_dir: Path, tmp_path: Path, capsys):
    assert main(["dump", str(data_dir), str(tmp_path / "no_kmeans"), str(tmp_path / "lab")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no fitted k-means" in err and len(err.splitlines()) == 1
