"""SUPERB speech enhancement task (speechssl.superb.tasks.se) on FBANK features of the synthetic
corpus's ``noisy/`` subsets."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
import torch

from speechssl.data.kaldi import DataDir, DataDirError
from speechssl.nn.conv_encoder import WAV2VEC2_CONV_LAYERS, conv_output_lengths
from speechssl.superb.tasks import get_task
from speechssl.superb.tasks.base import ProbeBatch
from speechssl.superb.tasks.se import (
    MAX_FRAME_MISMATCH,
    SepRNN,
    SpeechEnhancement,
    align_features,
    npsm_target,
)
from speechssl.upstream import FbankUpstream


def probe_batches(split_dir: Path, task, batch_size: int) -> list[ProbeBatch]:
    """What the runner hands a task: FBANK features, targets and (noisy) audio per batch."""
    data, targets, upstream = DataDir.load(split_dir), task.targets(split_dir), FbankUpstream()
    batches = []
    for start in range(0, len(data.utt_ids), batch_size):
        utts = data.utt_ids[start : start + batch_size]
        wavs = [torch.from_numpy(data.load_audio(u)) for u in utts]
        wav_lengths = torch.tensor([w.shape[0] for w in wavs])
        padded = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
        out = upstream(padded, wav_lengths)
        batches.append(
            ProbeBatch(
                utts,
                out.hidden_states[0],
                out.lengths,
                out.stride,
                [targets[u] for u in utts],
                padded,
                wav_lengths,
            )
        )
    return batches


def _sdr(est: torch.Tensor, ref: torch.Tensor) -> float:
    """SI-SDR in dB, written out here: the zero-mean estimate projected on the reference."""
    est, ref = est - est.mean(), ref - ref.mean()
    target = (est @ ref) / (ref @ ref) * ref
    return float(10 * torch.log10((target @ target) / ((est - target) @ (est - target))))


def test_se_trains_and_improves_si_sdr(synth_corpus: Path):
    torch.manual_seed(0)
    task = get_task("se", hidden_size=32, num_layers=1, dropout=0.0)
    assert isinstance(task, SpeechEnhancement) and task.needs_audio and task.metric == "pesq"
    fold = task.splits(synth_corpus)[0]
    train = probe_batches(fold["train"], task, batch_size=3)
    test = probe_batches(fold["test"], task, batch_size=4)
    head = task.build_head(80, 160, fold["train"])
    optimizer = torch.optim.AdamW(head.parameters(), lr=5e-3, weight_decay=0.0)
    losses = []
    for step in range(30):
        loss_sum, frames = task.loss(head, train[step % len(train)])
        loss = loss_sum / frames
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), task.grad_clip)
        optimizer.step()
        losses.append(loss.item())
    assert frames == int(head.num_frames(train[29 % len(train)].wav_lengths).sum())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5

    head.eval()
    enhanced = task.enhance(head, test[0])
    assert [e.shape[0] for e in enhanced] == test[0].wav_lengths.tolist()
    scores = task.evaluate(head, test, fold["test"])
    assert scores["si_sdri"] > 0, scores  # measured: +1.5 to +2.4 dB over seeds
    # SI-SDR improvement recomputed here from the files (projection of the estimate on the
    # zero-mean clean reference), averaged over the test utterances
    gains = []
    for batch in test:
        for b, enhanced in enumerate(task.enhance(head, batch)):
            clean = torch.from_numpy(sf.read(batch.targets[b], dtype="float64")[0])
            noisy = batch.wavs[b, : int(batch.wav_lengths[b])].double()
            gains.append(_sdr(enhanced.double(), clean) - _sdr(noisy, clean))
    assert scores["si_sdri"] == pytest.approx(sum(gains) / len(gains), abs=1e-3)
    assert 1.0 < scores["pesq"] < 4.7 and 0.0 < scores["stoi"] <= 1.0
    # chance = the noisy input left alone
    assert task.chance(fold["train"], fold["test"]) == pytest.approx(scores["pesq_noisy"])
    assert SpeechEnhancement(metric="si_sdri").chance(fold["train"], fold["test"]) == 0.0


@pytest.mark.parametrize("stride", [160, 320])
def test_stft_hop_is_the_stride_and_frames_align(stride: int):
    head = SepRNN(input_dim=4, stride=stride, hidden_size=8, num_layers=1)
    assert head.hop == stride
    lengths = torch.arange(8000, 48000, 997)
    # the upstream's frame counts at this stride: Kaldi fbank (25 ms window) or wav2vec 2.0 CNN
    if stride == 160:
        feature_frames = 1 + torch.div(lengths - 400, 160, rounding_mode="floor")
    else:
        feature_frames = conv_output_lengths(lengths, WAV2VEC2_CONV_LAYERS)
    gap = head.num_frames(lengths) - feature_frames
    assert gap.min() >= 0 and gap.max() <= MAX_FRAME_MISMATCH

    # STFT frame t is centred on sample t * stride: an impulse there peaks in frame t
    wav = torch.zeros(1, 12345)
    wav[0, 17 * stride] = 1.0
    spec = head.stft(wav)
    assert spec.shape == (1, int(head.num_frames(torch.tensor([12345]))), 257)
    assert int(spec.abs().pow(2).sum(-1).argmax()) == 17
    # a unit mask resynthesises the input exactly
    noisy = torch.randn(2, 12345)
    assert torch.allclose(head.istft(head.stft(noisy), 12345), noisy, atol=1e-4)


def test_align_features_repeats_the_last_frame_and_checks_the_gap():
    features = torch.arange(2 * 5 * 3, dtype=torch.float).reshape(2, 5, 3)
    lengths, frames = torch.tensor([5, 3]), torch.tensor([7, 4])
    aligned = align_features(features, lengths, frames, ["a", "b"])
    assert aligned.shape == (2, 7, 3)
    assert torch.equal(aligned[0, :5], features[0]) and torch.equal(aligned[0, 6], features[0, 4])
    assert torch.equal(aligned[1, :3], features[1, :3]) and torch.equal(
        aligned[1, 3], features[1, 2]
    )
    with pytest.raises(ValueError, match="utterance 'b'.*stride"):
        align_features(features, lengths, torch.tensor([5, 3 + MAX_FRAME_MISMATCH + 1]), ["a", "b"])


def test_npsm_target_is_the_clipped_phase_sensitive_magnitude():
    noisy = torch.polar(torch.rand(3, 4) + 0.5, torch.rand(3, 4) * 6)
    assert torch.allclose(npsm_target(noisy, noisy), noisy.abs())
    assert torch.allclose(npsm_target(0.5 * noisy, noisy), 0.5 * noisy.abs())
    assert torch.equal(npsm_target(-noisy, noisy), torch.zeros(3, 4))  # opposite phase: clipped
    sixty_degrees = noisy * torch.polar(torch.ones(()), torch.tensor(torch.pi / 3))
    assert torch.allclose(npsm_target(sixty_degrees, noisy), 0.5 * noisy.abs(), atol=1e-6)


def test_bad_input_raises_errors_naming_the_file(synth_corpus: Path, tmp_path: Path):
    task = SpeechEnhancement(hidden_size=8, num_layers=1)
    split = DataDir.load(synth_corpus / "noisy" / "dev").save(tmp_path / "dev")
    (split / "clean.scp").unlink()
    with pytest.raises(DataDirError, match="clean.scp: missing"):
        task.targets(split)

    split = DataDir.load(synth_corpus / "noisy" / "dev").save(tmp_path / "dev2")
    lines = (split / "clean.scp").read_text().splitlines()
    (split / "clean.scp").write_text("\n".join(lines[1:]) + "\n")
    dropped = lines[0].split()[0]
    with pytest.raises(DataDirError, match=f"clean.scp: no clean reference .*'{dropped}'"):
        task.targets(split)

    batch = probe_batches(synth_corpus / "noisy" / "dev", task, batch_size=2)[0]
    with pytest.raises(ValueError, match="stride 160 but the head was built for 320"):
        task.loss(task.build_head(80, 320, split), batch)
    batch.wavs, batch.wav_lengths = batch.wavs[:, :-800], batch.wav_lengths - 800
    with pytest.raises(ValueError, match="clean reference .* samples"):
        task.loss(task.build_head(80, 160, split), batch)
