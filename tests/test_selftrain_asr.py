"""Self-training's ASR side: the CTC loss weighted per utterance against per-utterance CTC
computed here, the labeled/pseudo mix of an epoch, and `asr-train --unlabeled` end to end."""

from __future__ import annotations

import json
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
