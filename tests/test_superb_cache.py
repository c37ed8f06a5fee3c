"""The hidden-state cache: computed once per upstream and data dir, keyed by both, fp16 shards,
recomputed when a shard is damaged; a whole lr sweep runs the upstream once per utterance."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from speechssl.data.kaldi import DataDir, read_table, write_table
from speechssl.superb.cache import (
    CachedHiddenStates,
    CacheError,
    CacheStats,
    cache_key,
    cached_hidden_states,
    upstream_identity,
)
from speechssl.superb.runner import SuperbConfig, run_superb
from speechssl.upstream import FbankUpstream, Upstream, UpstreamOutput


class CountingUpstream(Upstream):
    """FBANK with three hidden states (f, 2f, f + 1) that counts the utterances it runs on."""

    def __init__(self):
        super().__init__()
        self.fbank = FbankUpstream(cmvn=False)
        self.stride = self.fbank.stride
        self.identity = "counting-fbank-v1"
        self.utterances = 0

    @property
    def num_layers(self) -> int:
        return 2

    def forward(self, wavs, wav_lengths):
        self.utterances += len(wavs)
        out = self.fbank(wavs, wav_lengths)
        f = out.hidden_states[0]
        return UpstreamOutput([f, 2 * f, f + 1], out.lengths, out.stride)


def test_second_run_is_all_hits_and_matches_the_upstream(data_dir, tmp_path):
    upstream, stats = CountingUpstream(), CacheStats()
    ident = upstream_identity(None, upstream)
    first = cached_hidden_states(upstream, ident, data_dir, tmp_path / "cache", stats)
    utts = DataDir.load(data_dir).utt_ids
    assert (stats.forwards, stats.hits, upstream.utterances) == (len(utts), 0, len(utts))
    second = cached_hidden_states(upstream, ident, data_dir, tmp_path / "cache", stats)
    assert (stats.forwards, stats.hits, upstream.utterances) == (len(utts), len(utts), len(utts))
    assert str(stats) == f"cache: {len(utts)} forwards, {len(utts)} hits"
    assert second.folder == first.folder and second.num_hidden_states == 3

    # every utterance, every layer, equals the upstream's own output (to fp16 precision)
    utt = utts[5]
    wav = torch.from_numpy(DataDir.load(data_dir).load_audio(utt))[None]
    direct = upstream(wav, torch.tensor([wav.shape[1]])).hidden_states
    cached = torch.from_numpy(np.array(second.hidden_states(utt))).float()  # (T, L, D)
    assert cached.shape == (direct[0].shape[1], 3, 80) and second.stride == 160
    for k in range(3):
        torch.testing.assert_close(cached[:, k], direct[k][0], rtol=2e-3, atol=2e-2)
    assert second.hidden_states(utt).dtype == np.float16

    # selected layers: a separate entry with one hidden state
    only = cached_hidden_states(upstream, ident, data_dir, tmp_path / "cache", stats, layers=[1])
    assert only.folder != first.folder and only.num_hidden_states == 1
    torch.testing.assert_close(
        torch.from_numpy(np.array(only.hidden_states(utt)))[:, 0].float(), cached[:, 1]
    )


def test_sharded_index_and_atomic_folder(data_dir, tmp_path):
    upstream = CountingUpstream()
    cached = cached_hidden_states(
        upstream, "x", data_dir, tmp_path / "cache", shard_frames=100, batch_seconds=2.0
    )
    shards = sorted(cached.folder.glob("shard-*.npy"))
    assert len(shards) > 3  # ~12 utterances of 30-90 frames, 100 frames per shard
    assert sum(np.load(s, mmap_mode="r").shape[0] for s in shards) == sum(
        cached.num_frames.values()
    )
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cached.folder.name]  # no temp


def test_key_changes_with_the_data_and_the_upstream(data_dir, tmp_path):
    fbank = upstream_identity("fbank", FbankUpstream())
    assert fbank != upstream_identity("fbank_no_cmvn", FbankUpstream(cmvn=False))
    key = cache_key(fbank, data_dir, None)
    assert cache_key(fbank, data_dir, None) == key
    assert cache_key(fbank, data_dir, [0]) != key

    one, two = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save({"w": torch.zeros(3)}, one)
    torch.save({"w": torch.ones(3)}, two)
    assert upstream_identity(one) != upstream_identity(two)
    assert cache_key(upstream_identity(one), data_dir, None) != cache_key(
        upstream_identity(two), data_dir, None
    )

    wav_scp = read_table(data_dir / "wav.scp")
    first = next(iter(wav_scp))
    write_table(data_dir / "wav.scp", {u: p for u, p in wav_scp.items() if u != first})
    assert cache_key(fbank, data_dir, None) != key
    write_table(data_dir / "wav.scp", wav_scp)
    assert cache_key(fbank, data_dir, None) == key
    write_table(data_dir / "segments", {u: f"{u} 0.0 0.2" for u in wav_scp})
    assert cache_key(fbank, data_dir, None) != key


def test_damaged_shard_is_an_error_then_recomputed(data_dir, tmp_path):
    upstream, stats = CountingUpstream(), CacheStats()
    cached = cached_hidden_states(upstream, "x", data_dir, tmp_path / "cache", stats)
    shard = next(cached.folder.glob("shard-*.npy"))
    shard.write_bytes(shard.read_bytes()[:1000])  # truncated
    with pytest.raises(CacheError, match=rf"{shard.name}.*delete .* to recompute"):
        CachedHiddenStates(cached.folder)
    messages: list[str] = []
    again = cached_hidden_states(
        upstream, "x", data_dir, tmp_path / "cache", stats, log=messages.append
    )
    assert stats.forwards == 2 * len(cached.utts)  # recomputed
    assert any("recomputing" in m for m in messages)
    assert again.hidden_states(next(iter(cached.utts))).shape[1:] == (3, 80)


def test_lr_sweep_runs_the_upstream_once_per_utterance(synth_corpus, tmp_path):
    """5 learning rates of ER: the upstream sees each of the 16 utterances once; a
    second sweep (new exp folder, same cache) and a rerun (finished runs) see none."""
    upstream = CountingUpstream()
    utts = sum(
        len(DataDir.load(synth_corpus / "prosody" / s).utt_ids) for s in ("train", "dev", "test")
    )
    common = dict(seeds=(0,), steps=2, eval_every=1, name="counting", report=False)
    cache = tmp_path / "cache"
    [summary] = run_superb(
        SuperbConfig(cache_dir=cache, **common), upstream, ["er"], synth_corpus, tmp_path / "a"
    )
    assert len(summary["sweep"]) == 5 and upstream.utterances == utts
    runs = sorted((tmp_path / "a" / "counting" / "er").glob("lr*/seed*/result.json"))
    assert len(runs) == 5
    log = (tmp_path / "a" / "counting" / "log.txt").read_text()
    assert f"cache: {utts} forwards, 0 hits" in log

    run_superb(
        SuperbConfig(cache_dir=cache, **common), upstream, ["er"], synth_corpus, tmp_path / "b"
    )
    assert upstream.utterances == utts
    assert f"cache: 0 forwards, {utts} hits" in (tmp_path / "b/counting/log.txt").read_text()

    shutil.rmtree(cache)  # finished runs are skipped without the cache
    again = run_superb(
        SuperbConfig(cache_dir=cache, **common), upstream, ["er"], synth_corpus, tmp_path / "a"
    )
    assert upstream.utterances == utts and again == [summary]
    assert not Path(cache).exists()


def test_an_entry_committed_meanwhile_by_another_job_is_kept(data_dir, tmp_path, monkeypatch):
    """Two probe jobs of one upstream build the same entry at once (recipes/superb.sh --nj):
    the one that finishes second keeps the first one's folder instead of failing."""
    import speechssl.superb.cache as cache

    theirs = cached_hidden_states(CountingUpstream(), "x", data_dir, tmp_path / "theirs")
    replace = os.replace

    def racing_replace(src, dst):  # the other job commits just before this one renames
        if Path(dst).name == theirs.folder.name:
            shutil.copytree(theirs.folder, dst)
        replace(src, dst)

    monkeypatch.setattr(cache.os, "replace", racing_replace)
    ours = cached_hidden_states(CountingUpstream(), "x", data_dir, tmp_path / "cache")
    assert ours.folder.name == theirs.folder.name
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [theirs.folder.name]  # no temp
    utt = DataDir.load(data_dir).utt_ids[0]
    assert np.array_equal(np.array(ours.hidden_states(utt)), np.array(theirs.hidden_states(utt)))
