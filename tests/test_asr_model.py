"""Tokenizers, SpecAugment, the CTC model, saving/loading and scoring."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from speechssl.asr.dataset import ASRDataset
from speechssl.asr.model import ASRConfig, CTCModel, load_model
from speechssl.asr.score import score_dir, score_texts
from speechssl.asr.tokenizer import (
    CharTokenizer,
    SentencePieceTokenizer,
    TokenizerError,
    build_tokenizer,
    load_tokenizer,
    read_tokens,
)
from speechssl.asr.train import ASRTrainConfig, asr_train
from speechssl.config import from_dict
from speechssl.data.kaldi import DataDirError, read_table, write_data_dir, write_table
from speechssl.features.specaug import SpecAugConfig, spec_augment

TEXTS = ["Hello world!", "the cat's hat", "a-b  c", "Twenty one o'clock"]


def test_char_tokenizer_round_trip_and_files(tmp_path: Path):
    tok = CharTokenizer.from_texts(TEXTS)
    assert tok.tokens[0] == "<blank>" and "|" in tok.tokens and "'" in tok.tokens
    ids = tok.encode("Hello, World")
    assert tok.decode(ids) == "hello world"
    assert tok.tokens[ids[5]] == "|"  # the word boundary
    assert tok.decode(tok.encode("zzz qqq")) != "zzz qqq"  # unseen letters map to <unk>
    tok.save(tmp_path)
    assert read_tokens(tmp_path / "tokens.txt") == tok.tokens
    again = load_tokenizer(tmp_path)
    assert again.encode("the cat") == tok.encode("the cat")
    (tmp_path / "tokens.txt").write_text("<blank> 0\n| 2\n")
    with pytest.raises(TokenizerError, match=r"tokens.txt:2"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize("kind", ["unigram", "bpe"])
def test_sentencepiece_tokenizer(tmp_path: Path, kind: str):
    texts = [f"the {w} sat on the {v} mat" for w in ("cat", "dog", "hen") for v in ("red", "big")]
    tok = build_tokenizer(kind, texts * 5, tmp_path, vocab_size=40)
    assert isinstance(tok, SentencePieceTokenizer)
    assert tok.tokens[0] == "<blank>" and any(t.startswith("\u2581") for t in tok.tokens)
    ids = tok.encode("The dog sat")
    assert 0 not in ids and tok.decode(ids) == "the dog sat"
    assert load_tokenizer(tmp_path).tokens == tok.tokens
    assert read_tokens(tmp_path / "tokens.txt") == tok.tokens


def test_tokenizer_errors(tmp_path: Path):
    with pytest.raises(TokenizerError, match="empty"):
        CharTokenizer.from_texts(["", "123"])
    with pytest.raises(TokenizerError, match="kind"):
        build_tokenizer("words", TEXTS, tmp_path)
    with pytest.raises(TokenizerError, match="not found"):
        load_tokenizer(tmp_path / "nothing")


def test_spec_augment_masks_within_length():
    torch.manual_seed(0)
    x = torch.ones(4, 50, 16)
    lengths = torch.tensor([50, 40, 20, 10])
    cfg = SpecAugConfig(time_masks=2, time_mask_frames=10, feature_masks=2, feature_mask_dims=4)
    y = spec_augment(x, lengths, cfg, generator=None)
    assert y.shape == x.shape and (y == 0).any()
    dropped_frames = (y == 0).all(-1).sum(1)
    assert (dropped_frames <= 2 * torch.clamp(lengths * 0.1, max=10) + 0).all()
    dropped_dims = (y == 0).all(1).sum(1)
    assert (dropped_dims <= 8).all()
    off = SpecAugConfig(time_masks=0, feature_masks=0)
    assert torch.equal(spec_augment(x, lengths, off, None), x)


def _asr_dir(root: Path, n: int = 6) -> Path:
    """Tones whose pitch spells the transcript: 'a' low, 'b' high; one 0.1 s tone per letter."""
    import numpy as np

    from speechssl.data.audio import write_wav

    rng = np.random.default_rng(0)
    wav_scp, utt2spk, text = {}, {}, {}
    for i in range(n):
        word = "".join(rng.choice(["a", "b"], size=4))
        t = np.arange(1600) / 16000
        wav = np.concatenate(
            [0.5 * np.sin(2 * np.pi * (300 if c == "a" else 1200) * t) for c in word]
        )
        utt = f"s0-u{i}"
        write_wav(root / f"{utt}.wav", wav + 0.01 * rng.standard_normal(len(wav)))
        wav_scp[utt], utt2spk[utt], text[utt] = f"{utt}.wav", "s0", word
    write_data_dir(root, wav_scp, utt2spk, text)
    return root


def test_ctc_model_learns_and_round_trips(tmp_path: Path):
    data = _asr_dir(tmp_path / "data")
    cfg = from_dict(
        ASRTrainConfig,
        {
            "model": {
                "head": "blstm",
                "head_layers": 1,
                "head_dim": 32,
                "subsample": 2,
                "dropout": 0.0,
                "specaug": {"time_masks": 0, "feature_masks": 0},
            },
            "trainer": {
                "max_updates": 60,
                "lr": 5e-3,
                "warmup_updates": 5,
                "save_every": 60,
                "log_every": 10,
                "progress_bar": False,
                "max_batch_seconds": 10,
            },
        },
    )
    result = asr_train(cfg, data, tmp_path / "exp", valid_dir=data)
    log = [line for line in (tmp_path / "exp/train_log.jsonl").read_text().splitlines()]
    assert len(log) >= 2
    import json

    losses = [json.loads(line)["loss"] for line in log if '"loss"' in line]
    assert losses[-1] < 0.5 * losses[0], losses
    assert Path(result["model"]).is_file() and (tmp_path / "exp/tokens.txt").is_file()
    model = load_model(tmp_path / "exp")
    assert model.stride == 320 and not model.training
    wav = torch.from_numpy(
        __import__("soundfile").read(str(data / "s0-u0.wav"), dtype="float32")[0]
    )
    logp, lengths = model.logprobs(wav[None], torch.tensor([len(wav)]))
    assert logp.shape[-1] == len(model.tokens) and int(lengths[0]) == logp.shape[1]
    assert torch.allclose(logp.exp().sum(-1), torch.ones_like(logp[..., 0]), atol=1e-4)
    # the reloaded model computes exactly what the trained one saved
    again = load_model(result["model"])
    assert torch.equal(again.logprobs(wav[None], torch.tensor([len(wav)]))[0], logp)


def test_frozen_upstream_gets_no_gradient_until_unfrozen():
    from speechssl.data.dataset import AudioBatch
    from speechssl.ssl.wav2vec2 import Wav2Vec2Model, wav2vec2_config
    from speechssl.upstream import SSLUpstream

    upstream = SSLUpstream(Wav2Vec2Model(wav2vec2_config("tiny")))
    cfg = ASRConfig(head="linear", freeze_updates=2, specaug=SpecAugConfig(0, 0, 0, 0, 0))
    model = CTCModel(upstream, ["<blank>", "|", "a", "b"], cfg)
    batch = AudioBatch(
        torch.randn(2, 8000),
        torch.tensor([8000, 6000]),
        ["x", "y"],
        torch.tensor([[2, 1, 3], [3, 3, -100]]),
        torch.tensor([3, 2]),
    )
    encoder = [p for n, p in upstream.named_parameters() if "feature_extractor" in n]
    others = [p for n, p in upstream.named_parameters() if "feature_extractor" not in n]
    model.set_num_updates(0)
    model(batch).loss.backward()
    assert all(p.grad is None for p in others) and model.output.weight.grad is not None
    model.set_num_updates(2)
    model(batch).loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in others)
    assert all(p.grad is None and not p.requires_grad for p in encoder)


def test_asr_dataset_errors(tmp_path: Path):
    data = _asr_dir(tmp_path / "data", n=3)
    text = read_table(data / "text")
    del text["s0-u1"]
    write_table(data / "text", text)
    tok = CharTokenizer.from_texts(["ab"])
    with pytest.raises(DataDirError, match="s0-u1"):
        ASRDataset(data, tok)
    text["s0-u1"] = "123"  # normalises to nothing: skipped with a warning
    write_table(data / "text", text)
    with pytest.warns(UserWarning, match="empty transcript.*s0-u1"):
        ds = ASRDataset(data, tok)
    assert "s0-u1" not in ds.utt_ids and len(ds) == 2


def test_score_counts_and_report(tmp_path: Path):
    refs = {"u1": "the cat sat", "u2": "a dog", "u3": "hello there world"}
    hyps = {"u1": "the bat sat", "u2": "a dog", "u3": "hello world extra"}
    summary, report = score_texts(refs, hyps)
    # u1: 1 sub; u3: 'there' deleted and 'extra' inserted (or 2 subs) -> 2 errors; 8 words
    assert summary.words == 8
    assert summary.substitutions + summary.deletions + summary.insertions == 3
    assert math.isclose(summary.wer, 100 * 3 / 8)
    assert math.isclose(summary.ser, 100 * 2 / 3)
    assert any(line.startswith("u1") and "#sub 1" in line for line in report)
    assert "BAT" in "\n".join(report)
    write_table(tmp_path / "ref", refs)
    write_table(tmp_path / "hyp", {"u1": "the cat sat"})  # u2, u3 missing: all deletions
    s = score_dir(tmp_path / "ref", tmp_path / "hyp", tmp_path / "out")
    assert s.missing == 2 and s.deletions == 5 and s.wer == pytest.approx(100 * 5 / 8)
    assert (tmp_path / "out/wer.txt").read_text().startswith("%WER 62.50 [ 5 / 8, 0 ins, 5 del")
    write_table(tmp_path / "hyp", {"zz": "x"})
    with pytest.raises(ValueError, match="zz"):
        score_dir(tmp_path / "ref", tmp_path / "hyp")
