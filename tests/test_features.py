"""Features stage: equality with torchaudio, sharded jobs, resume, CMVN, on-the-fly path."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.compliance.kaldi as ta_kaldi

from speechssl.cli import main
from speechssl.data.kaldi import DataDir, DataDirError, read_table
from speechssl.data.split import split, subset
from speechssl.features import FeatureConfig, FeatureExtractor, compute_features
from speechssl.features import cmvn as cmvn_lib
from speechssl.features.pipeline import (
    compute_cmvn,
    compute_job,
    feature_config,
    load_cmvn,
    load_features,
    merge_jobs,
)


def _run_stage(data_dir, feat_root, nj=2, kind="fbank"):
    """What egs/synth/run.sh stage 2 does, through the CLI."""
    assert main(["data", "split", "-n", str(nj), str(data_dir)]) == 0
    common = ["--feat-root", str(feat_root), "--nj", str(nj), "--kind", kind, str(data_dir)]
    for job in range(1, nj + 1):
        assert main(["features", "compute", "--job", str(job), *common]) == 0
    assert main(["features", "merge", *common]) == 0


def test_fbank_equals_torchaudio(data_dir, tmp_path):
    _run_stage(data_dir, tmp_path / "fbank")
    d = DataDir.load(data_dir)
    frames = read_table(data_dir / "utt2num_frames")
    assert set(frames) == set(d.utt2spk)
    assert (data_dir / "frame_shift").read_text().strip() == "0.01"
    assert feature_config(data_dir).num_mel_bins == 80
    worst = 0.0
    for utt in d.utt_ids:
        wav, sr = sf.read(data_dir / d.wav_scp[utt], dtype="float32")  # independent loader
        ref = ta_kaldi.fbank(
            torch.from_numpy(wav)[None] * 32768, num_mel_bins=80, dither=0.0, sample_frequency=sr
        )
        got = load_features(data_dir, utt)
        assert got.shape == tuple(ref.shape) and int(frames[utt]) == got.shape[0]
        worst = max(worst, float(np.abs(got - ref.numpy()).max()))
    assert worst <= 1e-4


def test_mfcc_with_deltas():
    cfg = FeatureConfig(kind="mfcc", deltas=True)
    feats = compute_features(np.random.default_rng(0).standard_normal(16000) * 0.1, cfg)
    assert feats.shape == (cfg.num_frames(16000), 39) and cfg.dim == 39
    # deltas of a constant signal are zero
    const = compute_features(np.full(16000, 0.1), cfg)
    assert torch.allclose(const[5:-5, 13:], torch.zeros(1), atol=1e-3)


def test_jobs_resume_and_are_deterministic(data_dir, tmp_path):
    _run_stage(data_dir, tmp_path / "f")
    first = (data_dir / "feats.scp").read_bytes()
    arks = sorted((tmp_path / "f" / "data").glob("*.ark"))
    before = [a.stat().st_mtime_ns for a in arks]
    # a rerun skips complete jobs (arks untouched) and gives the same files
    _run_stage(data_dir, tmp_path / "f")
    assert [a.stat().st_mtime_ns for a in arks] == before
    assert (data_dir / "feats.scp").read_bytes() == first
    # an interrupted job (ark, but no scp) is redone; the result is identical
    job_scp = tmp_path / "f" / "data" / "raw_data.1.scp"
    job_scp.unlink()
    _run_stage(data_dir, tmp_path / "f")
    assert (data_dir / "feats.scp").read_bytes() == first


def test_job_outputs_of_another_data_dir_are_recomputed(data_dir, tmp_path, capsys):
    """A job whose outputs were left by an earlier version of the data dir (re-rendered with other
    utterances) is computed again instead of being skipped and failing the merge."""
    cfg, data = FeatureConfig(), DataDir.load(data_dir)
    keep = data.utt_ids[:-1]
    old = subset(data, tmp_path / "old", keep).path
    compute_job(old, tmp_path / "f", cfg, "x", 1)
    capsys.readouterr()
    scp = compute_job(data_dir, tmp_path / "f", cfg, "x", 1)
    assert "other utterances than" in capsys.readouterr().out
    assert set(read_table(scp)) == set(data.utt_ids)
    merge_jobs(data_dir, tmp_path / "f", cfg, "x", 1)
    compute_job(data_dir, tmp_path / "f", cfg, "x", 1)
    assert "complete already" in capsys.readouterr().out


def test_merge_refuses_incomplete_jobs(data_dir, tmp_path):
    cfg = FeatureConfig()
    compute_job(split(DataDir.load(data_dir), 2)[0], tmp_path / "f", cfg, "x", 1)
    with pytest.raises(FileNotFoundError, match="job 2 of 2 did not complete"):
        merge_jobs(data_dir, tmp_path / "f", cfg, "x", 2)


def test_cmvn_global_and_per_speaker(data_dir, tmp_path):
    _run_stage(data_dir, tmp_path / "f")
    compute_cmvn(data_dir)
    d = DataDir.load(data_dir)
    allf = np.concatenate([load_features(data_dir, u) for u in d.utt_ids])
    normed = cmvn_lib.apply(allf, load_cmvn(data_dir))
    assert np.abs(normed.mean(0)).max() < 1e-3 and np.abs(normed.std(0) - 1).max() < 1e-3
    spk = d.utt2spk[d.utt_ids[0]]
    spkf = np.concatenate([load_features(data_dir, u) for u in d.spk2utt[spk]])
    normed = cmvn_lib.apply(spkf, load_cmvn(data_dir, spk))
    assert np.abs(normed.mean(0)).max() < 1e-3
    assert "cmvn.scp" not in DataDir.load(data_dir).tables  # keyed by speaker, not utterance


def test_on_the_fly_matches_stored(data_dir, tmp_path):
    _run_stage(data_dir, tmp_path / "f")
    d = DataDir.load(data_dir)
    utts = d.utt_ids[:3]
    wavs = [torch.from_numpy(d.load_audio(u)) for u in utts]
    lengths = torch.tensor([len(w) for w in wavs])
    batch = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
    feats, frame_lengths = FeatureExtractor(FeatureConfig())(batch, lengths)
    for i, u in enumerate(utts):
        stored = load_features(data_dir, u)
        assert int(frame_lengths[i]) == stored.shape[0]
        assert np.abs(feats[i, : stored.shape[0]].numpy() - stored).max() <= 1e-4
        assert (feats[i, stored.shape[0] :] == 0).all()  # padding stays zero


def test_bad_audio_names_utterance(data_dir, tmp_path):
    d = DataDir.load(data_dir)
    victim = d.utt_ids[1]
    (data_dir / d.wav_scp[victim]).write_bytes(b"garbage" * 100)
    with pytest.raises(Exception, match=victim):
        compute_job(data_dir, tmp_path / "f", FeatureConfig(), "x", 1)
    assert not (tmp_path / "f" / "raw_x.1.scp").exists()


def test_corrupt_feature_archive_named(data_dir, tmp_path):
    _run_stage(data_dir, tmp_path / "f", nj=1)
    ark = tmp_path / "f" / "data" / "raw_data.1.ark"
    ark.write_bytes(ark.read_bytes()[:100])
    with pytest.raises(DataDirError, match="cannot read features"):
        for u in DataDir.load(data_dir).utt_ids:
            load_features(data_dir, u)
