"""Self-training's ASR side: the CTC loss weighted per utterance against per-utterance CTC
computed here, the labeled/pseudo mix of an epoch, and `asr-train --unlabeled` end to end."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_asr_model import _asr_dir

from speechssl.asr.dataset import ASRDataset, JointASRDataset
from speechssl.asr.model import ASRConfig, CTCModel
from speechssl.asr.tokenizer import build_tokenizer
from speechssl.cli import main
from speechssl.data.dataset import AudioBatch
from speechssl.data.kaldi import write_table
from speechssl.features.specaug import SpecAugConfig
from speechssl.upstream import load_upstream


def test_weighted_ctc_is_the_weighted_sum_of_each_utterance_alone():
    torch.manual_seed(0)
    cfg = ASRConfig(head="linear", specaug=SpecAugConfig(0, 0, 0, 0, 0), dropout=0.0)
    model = CTCModel(load_upstream("fbank"), ["<blank>", "|", "a", "b"], cfg).eval()
    wavs = 0.1 * torch.randn(3, 8000)
    lengths = torch.tensor([8000, 6400, 4800])
    labels = torch.tensor([[2, 1, 3], [3, 3, -100], [2, -100, -100]])
    label_lengths = torch.tensor([3, 2, 1])
    weights = torch.tensor([1.0, 0.5, 0.0])
    batch = AudioBatch(wavs, lengths, ["x", "y", "z"], labels, label_lengths, weights=weights)
    out = model(batch)
    expected = 0.0
    for b in range(3):
        logp, n = model.logprobs(wavs[b : b + 1, : int(lengths[b])], lengths[b : b + 1])
        target = labels[b, : int(label_lengths[b])][None]
        ctc = F.ctc_loss(logp.transpose(0, 1), target, n, label_lengths[b : b + 1],
                         reduction="sum", zero_infinity=True)  # fmt: skip
        expected += float(weights[b]) * float(ctc)
    assert float(out.loss) == pytest.approx(expected, rel=1e-4)
    assert out.sample_size == 6  # tokens, unweighted
    unweighted = model(AudioBatch(wavs, lengths, ["x", "y", "z"], labels, label_lengths))
    assert float(unweighted.loss) > float(out.loss)


def _pseudo_dir(root: Path, n: int, weights: list[float]) -> Path:
    data = _asr_dir(root, n=n)
    write_table(data / "utt2weight", {f"s0-u{i}": str(w) for i, w in enumerate(weights)})
    return data


def test_an_epoch_mixes_labeled_and_pseudo_at_the_ratio(tmp_path):
    labeled_dir = _asr_dir(tmp_path / "labeled", n=4)
    pseudo_dir = _pseudo_dir(tmp_path / "pseudo", 12, [0.1 * i for i in range(12)])
    tok = build_tokenizer("char", ["abab", "bbaa"], tmp_path / "tok")
    joint = JointASRDataset(
        ASRDataset(labeled_dir, tok), ASRDataset(pseudo_dir, tok), 0.5, pseudo_scale=2.0
    )
    assert len(joint) == 24 and joint.num_labeled == 12  # 4 labeled x 3 passes, 12 pseudo
    items = joint.__getitems__(list(range(len(joint))))
    weights = {it.utt_id: it.weight for it in items[12:]}
    assert all(it.weight == 1.0 for it in items[:12])
    assert weights["s0-u5"] == pytest.approx(2.0 * 0.5)
    assert len(joint.durations) == 24
    flat = JointASRDataset(ASRDataset(labeled_dir, tok), ASRDataset(pseudo_dir, tok), 0.25,
                           confidence=False)  # fmt: skip
    assert flat.num_labeled == 4 and {it.weight for it in flat.__getitems__(range(4, 16))} == {1.0}


def test_asr_train_with_unlabeled_trains_on_both(tmp_path, capsys):
    labeled = _asr_dir(tmp_path / "labeled", n=4)
    pseudo = _pseudo_dir(tmp_path / "pseudo", 6, [1.0, 0.5, 0.8, 0.9, 0.7, 0.6])
    sets = ["model.head=linear", "model.specaug.time_masks=0", "model.specaug.feature_masks=0"]
    sets += ["trainer.max_updates=4", "trainer.save_every=4", "trainer.progress_bar=false"]
    sets += ["trainer.max_batch_seconds=4", "data.labeled_ratio=0.4"]
    argv = ["asr-train", "--data", str(labeled), "--unlabeled", str(pseudo)]
    argv += ["--exp", str(tmp_path / "exp")] + [x for kv in sets for x in ("--set", kv)]
    assert main(argv) == 0
    assert (tmp_path / "exp" / "model.pt").is_file()
    log = [json.loads(x) for x in (tmp_path / "exp/train_log.jsonl").read_text().splitlines()]
    seconds = sum(r["audio_seconds"] for r in log if "loss" in r)
    assert seconds > 0
    bad = tmp_path / "bad"
    _pseudo_dir(bad, 2, [1.0, 1.0])
    (bad / "utt2weight").write_text("s0-u0 high\ns0-u1 1.0\n")
    bad_argv = ["asr-train", "--data", str(labeled), "--unlabeled", str(bad)]
    bad_argv += ["--exp", str(tmp_path / "exp2")] + [x for kv in sets for x in ("--set", kv)]
    assert main(bad_argv) == 1
    err = capsys.readouterr().err
    assert f"{bad}/utt2weight: not a number" in err and "Traceback" not in err


_OPENED: list[str] | None = None  # paths opened while a test records (sys.addaudithook stays)


def _record_open(event: str, args: tuple) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], str | Path):
        _OPENED.append(os.path.realpath(args[0]))


def test_the_student_never_opens_the_hidden_true_text(tmp_path, capsys):
    global _OPENED
    labeled = _asr_dir(tmp_path / "labeled", n=4)
    unlabeled = _asr_dir(tmp_path / "unlabeled", n=6)
    hidden, oracle = tmp_path / "exp/unlabeled", tmp_path / "exp/unlabeled.text.oracle"
    assert main(["data", "hide-text", str(unlabeled), str(hidden), str(oracle)]) == 0
    assert not (hidden / "text").exists() and (unlabeled / "text").read_text() == oracle.read_text()
    assert (
        main(["data", "hide-text", str(unlabeled), str(tmp_path / "o"), str(tmp_path / "o/t")]) == 1
    )
    assert "must lie outside" in capsys.readouterr().err
    # a student's pseudo-labelled dir built from the hidden copy (labels made up here)
    pseudo = tmp_path / "pseudo"
    assert main(["data", "subset", str(hidden), str(pseudo), "--first", "6"]) == 0
    write_table(pseudo / "text", {f"s0-u{i}": "ab ba" for i in range(6)})
    sets = ["model.head=linear", "trainer.max_updates=2", "trainer.save_every=2"]
    sets += ["trainer.progress_bar=false", "trainer.max_batch_seconds=4"]
    argv = ["asr-train", "--data", str(labeled), "--unlabeled", str(pseudo)]
    argv += ["--exp", str(tmp_path / "student")] + [x for kv in sets for x in ("--set", kv)]
    sys.addaudithook(_record_open)
    _OPENED = []
    try:
        assert main(argv) == 0
        opened = set(_OPENED)
    finally:
        _OPENED = None
    assert os.path.realpath(pseudo / "text") in opened  # the recording works
    assert os.path.realpath(oracle) not in opened
    assert os.path.realpath(unlabeled / "text") not in opened


def test_distillation_is_the_weighted_kl_to_the_teacher_per_utterance():
    torch.manual_seed(0)
    cfg = ASRConfig(head="linear", specaug=SpecAugConfig(0, 0, 0, 0, 0), dropout=0.0)
    model = CTCModel(load_upstream("fbank"), ["<blank>", "|", "a", "b"], cfg).eval()
    wavs, lengths = 0.1 * torch.randn(3, 8000), torch.tensor([8000, 6400, 4800])
    labels = torch.tensor([[2, 1, 3], [3, 3, -100], [2, -100, -100]])
    label_lengths = torch.tensor([3, 2, 1])
    logp, n = model.logprobs(wavs, lengths)
    q = torch.rand(3, int(n.max()), 4).softmax(-1)
    batch = AudioBatch(wavs, lengths, ["x", "y", "z"], labels, label_lengths,
                       weights=torch.tensor([1.0, 0.0, 0.0]))  # fmt: skip
    hard = float(model(batch).loss)
    batch.soft_targets, batch.soft_lengths = q, torch.tensor([0, int(n[1]), int(n[2])])
    batch.soft_weights = torch.tensor([0.0, 0.5, 2.0])
    expected = 0.0
    for b, w in ((1, 0.5), (2, 2.0)):  # torch's own KL, each utterance alone
        k = int(n[b])
        kl = F.kl_div(logp[b, :k], q[b, :k], reduction="sum")
        expected += w * float(kl)
    assert float(model(batch).loss) - hard == pytest.approx(expected, rel=1e-4)


def test_asr_train_on_soft_targets(tmp_path, capsys):
    labeled = _asr_dir(tmp_path / "labeled", n=4)
    pseudo = _pseudo_dir(tmp_path / "pseudo", 4, [1.0, 0.5, 0.8, 0.9])
    sets = ["model.head=linear", "trainer.max_updates=3", "trainer.save_every=3"]
    sets += [
        "trainer.progress_bar=false",
        "trainer.max_batch_seconds=4",
        "data.pseudo_targets=soft",
    ]
    argv = ["asr-train", "--data", str(labeled), "--unlabeled", str(pseudo)]
    argv += ["--exp", str(tmp_path / "exp")] + [x for kv in sets for x in ("--set", kv)]
    assert main(argv) == 1  # no soft_targets.pt yet
    assert "soft_targets.pt: missing" in capsys.readouterr().err
    tokens = build_tokenizer("char", ["abab", "bbaa"], tmp_path / "tok").tokens
    from speechssl.asr.dataset import SOFT_FORMAT
    from speechssl.data.kaldi import read_table

    utts = sorted(read_table(pseudo / "utt2spk"))
    post = {u: torch.rand(20, len(tokens)).softmax(-1).half() for u in utts}
    payload = {"format": SOFT_FORMAT, "tokens": tokens, "stride": 480, "posteriors": post}
    torch.save(payload, pseudo / "soft_targets.pt")
    assert main(argv) == 0, capsys.readouterr().err
    payload["tokens"] = tokens[:-1] + ["z"]
    torch.save(payload, pseudo / "soft_targets.pt")
    other = [a if a != str(tmp_path / "exp") else str(tmp_path / "exp2") for a in argv]
    assert main(other) == 1
    assert "tokens differ from the student's" in capsys.readouterr().err


def test_the_sample_ensemble_draws_each_teachers_label_per_batch_seed(tmp_path):
    """`pseudo-label --combine sample` leaves every teacher's label as utt2text<i>; a seeded
    load draws one (about evenly over 200 seeds for two teachers: a binomial count of 100 ±
    7, asserted within ±30), the same seed the same one, and an unseeded load keeps `text`."""
    from speechssl.data.dataset import BatchIndices

    data = _asr_dir(tmp_path / "pseudo", n=3)
    utts = [f"s0-u{i}" for i in range(3)]
    write_table(data / "utt2text1", {u: "a a b b" for u in utts})
    write_table(data / "utt2text2", {u: "b b a a" for u in utts[:2]} | {utts[2]: ""})
    tok = build_tokenizer("char", ["abab", "bbaa"], tmp_path / "tok")
    ds = ASRDataset(data, tok)
    first, second = (torch.tensor(tok.encode(t)) for t in ("a a b b", "b b a a"))
    counts = {"first": 0, "second": 0}
    for seed in range(200):
        item = ds.__getitems__(BatchIndices([0], seed))[0]
        again = ds.__getitems__(BatchIndices([0], seed))[0]
        assert torch.equal(item.labels, again.labels)
        counts["first" if torch.equal(item.labels, first) else "second"] += 1
        assert torch.equal(item.labels, first) or torch.equal(item.labels, second)
        # teacher 2 said nothing for utterance 2: only teacher 1's label is drawn there
        assert torch.equal(ds.__getitems__(BatchIndices([2], seed))[0].labels, first)
    assert 70 <= counts["first"] <= 130, counts
    assert torch.equal(ds.__getitems__([0])[0].labels, ds.labels[utts[0]])  # unseeded: `text`
