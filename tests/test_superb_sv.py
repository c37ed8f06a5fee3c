"""SUPERB speaker verification task (speechssl.superb.tasks.sv) and its scoring
(speechssl.superb.sv_metrics) on FBANK features of the synthetic corpus's ``speakers/sv_*``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speechssl.data.kaldi import DataDir
from speechssl.superb.sv_metrics import (
    Trial,
    TrialsError,
    cosine_scores,
    read_trials,
    verification_metrics,
)
from speechssl.superb.tasks import get_task
from speechssl.superb.tasks.base import ProbeBatch
from speechssl.superb.tasks.sv import SpeakerVerification
from speechssl.upstream import FbankUpstream

SMALL = dict(projection_dim=64, tdnn_channels=(64, 64, 64, 64, 192), embedding_dim=64)


def probe_batches(split_dir: Path, task, batch_size: int, seed: int = 0) -> list[ProbeBatch]:
    """What the runner hands a task: FBANK features and speaker targets, shuffled batches."""
    data, targets, upstream = DataDir.load(split_dir), task.targets(split_dir), FbankUpstream()
    order = torch.randperm(len(data.utt_ids), generator=torch.Generator().manual_seed(seed))
    utt_ids = [data.utt_ids[i] for i in order]
    batches = []
    for start in range(0, len(utt_ids), batch_size):
        utts = utt_ids[start : start + batch_size]
        wavs = [torch.from_numpy(data.load_audio(u)) for u in utts]
        lengths = torch.tensor([w.shape[0] for w in wavs])
        out = upstream(torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True), lengths)
        targets_ = [targets[u] for u in utts]
        batches.append(ProbeBatch(utts, out.hidden_states[0], out.lengths, out.stride, targets_))
    return batches


def test_sv_trains_and_beats_chance_on_test_trials(synth_corpus: Path):
    torch.manual_seed(0)
    task = get_task("sv", **SMALL)
    assert isinstance(task, SpeakerVerification) and task.metric == "eer"
    assert not task.higher_is_better
    fold = task.splits(synth_corpus)[0]
    train = probe_batches(fold["train"], task, batch_size=12)
    head = task.build_head(80, 160, fold["train"])
    assert len(head.speakers) == len(set(DataDir.load(fold["train"]).utt2spk.values()))
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3)
    losses = []
    for step in range(40):
        loss_sum, utts = task.loss(head, train[step % len(train)])
        loss = loss_sum / utts
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert utts == len(train[39 % len(train)].utt_ids)
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5])

    head.eval()
    dev = task.evaluate(head, probe_batches(fold["dev"], task, 16), fold["dev"])
    test = task.evaluate(head, probe_batches(fold["test"], task, 16), fold["test"])
    for scores in (dev, test):
        assert scores["target_trials"] > 0 and scores["nontarget_trials"] > 0
        assert 0.0 <= scores["min_dcf"] <= 1.0
    # chance is 50% EER; measured 16.7-20% over seeds after 40 steps (untrained: 27-43%)
    assert task.chance(fold["train"], fold["test"]) == 50.0
    assert test["eer"] < 30.0, test


@pytest.mark.parametrize("seed", [0, 2, 3, 5])
def test_eer_and_min_dcf_agree_with_speechbrain(seed: int):
    from speechbrain.utils.metric_stats import EER, minDCF

    generator = torch.Generator().manual_seed(seed)
    positive = torch.randn(40 + seed, generator=generator) + 1.5
    negative = torch.randn(70 - seed, generator=generator)
    trials = [Trial("e", "t", True)] * len(positive) + [Trial("e", "t", False)] * len(negative)
    ours = verification_metrics(torch.cat([positive, negative]), trials, p_target=0.05)
    eer, _ = EER(positive, negative)
    min_dcf, _ = minDCF(positive, negative, p_target=0.05)
    assert ours["eer"] == pytest.approx(100 * eer, abs=1e-4)
    assert ours["min_dcf"] == pytest.approx(min_dcf / 0.05, abs=1e-5)  # ours is normalised


def test_perfect_and_inverted_scores():
    trials = [Trial("a", "b", True), Trial("a", "c", False), Trial("b", "c", False)]
    assert verification_metrics(torch.tensor([0.9, 0.1, 0.2]), trials)["eer"] == 0.0
    assert verification_metrics(torch.tensor([0.9, 0.1, 0.2]), trials)["min_dcf"] == 0.0
    assert verification_metrics(torch.tensor([0.0, 0.5, 0.6]), trials)["eer"] == 100.0


def test_cosine_scores():
    embeddings = {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([2.0, 2.0])}
    scores = cosine_scores(embeddings, [Trial("a", "b", True), Trial("b", "b", False)])
    assert torch.allclose(scores, torch.tensor([2**-0.5, 1.0]))
    with pytest.raises(TrialsError, match="no embedding for utterance 'c'"):
        cosine_scores(embeddings, [Trial("a", "c", True)])


def test_bad_trials_raise_errors_naming_the_file(synth_corpus: Path, tmp_path: Path):
    task = SpeakerVerification(**SMALL)
    split = DataDir.load(synth_corpus / "speakers" / "sv_test").save(tmp_path / "sv_test")
    good = (synth_corpus / "speakers" / "sv_test" / "trials").read_text()
    assert len(read_trials(synth_corpus / "speakers" / "sv_test" / "trials")) == len(
        good.splitlines()
    )
    utt = good.split()[0]
    trials = split / "trials"

    trials.write_text(good + f"{utt} nobody-speakers-000000 nontarget\n")
    line = len(good.splitlines()) + 1
    with pytest.raises(TrialsError, match=f"trials:{line}: utterance 'nobody-speakers-000000'"):
        task.targets(split)
    with pytest.raises(TrialsError, match="trials:.*'nobody-speakers-000000' is not in"):
        task.evaluate(None, [], split)

    trials.write_text(good + f"{utt} {utt} maybe\n")
    with pytest.raises(TrialsError, match=f"trials:{line}: expected"):
        task.targets(split)
    trials.write_text("".join(x + "\n" for x in good.splitlines() if x.endswith(" target")))
    with pytest.raises(TrialsError, match="both target and nontarget"):
        task.targets(split)
    trials.unlink()
    with pytest.raises(TrialsError, match="trials: missing"):
        task.evaluate(None, [], split)


def test_loss_rejects_speakers_outside_training(synth_corpus: Path):
    task = SpeakerVerification(**SMALL)
    head = task.build_head(80, 160, synth_corpus / "speakers" / "sv_train")
    batch = probe_batches(synth_corpus / "speakers" / "sv_dev", task, batch_size=2)[0]
    with pytest.raises(ValueError, match=f"speaker '{batch.targets[0]}' is not among"):
        task.loss(head, batch)
