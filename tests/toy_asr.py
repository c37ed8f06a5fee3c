"""Toy speech for ASR tests: words over {a, b} spelled as tones (a 300 Hz, b 1200 Hz, 0.1 s per
letter, 0.2 s pauses), and a tiny CTC model trained on it in seconds that recognises it well."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soxr

from speechssl.asr.train import ASRTrainConfig, asr_train
from speechssl.config import from_dict
from speechssl.data.audio import write_wav
from speechssl.data.kaldi import write_data_dir

WORDS = ["ab", "ba", "aba", "bab", "abab", "baba"]
LETTER, PAUSE = 0.1, 0.2  # seconds


def tones(word: str, sr: int) -> np.ndarray:
    t = np.arange(int(LETTER * sr)) / sr
    return np.concatenate([0.5 * np.sin(2 * np.pi * (300 if c == "a" else 1200) * t) for c in word])


def utterance(words: list[str], sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Pause, word, pause, word, ..., pause; light noise so silence is not digital zero."""
    gap = np.zeros(int(PAUSE * sr))
    x = np.concatenate([gap] + [p for w in words for p in (tones(w, sr), gap)])
    return (x + 0.003 * np.random.default_rng(seed).standard_normal(len(x))).astype(np.float32)


def random_sentence(rng: np.random.Generator) -> list[str]:
    return [str(w) for w in rng.choice(WORDS, size=int(rng.integers(2, 5)))]


def train_toy_model(root: Path) -> Path:
    """A tiny CTC model on 48 toy utterances, a quarter of them band-limited to 4 kHz (data
    under root/data); returns model.pt."""
    rng = np.random.default_rng(0)
    wav_scp, utt2spk, text = {}, {}, {}
    for i in range(48):
        words, utt = random_sentence(rng), f"s0-u{i:02d}"
        wav = utterance(words, seed=i)
        if i % 4 == 3:  # a quarter recorded at 8 kHz: the model must not depend on the band
            wav = soxr.resample(utterance(words, 8000, seed=i), 8000, 16000).astype(np.float32)
        write_wav(root / "data" / f"{utt}.wav", wav)
        wav_scp[utt], utt2spk[utt], text[utt] = f"{utt}.wav", "s0", " ".join(words)
    write_data_dir(root / "data", wav_scp, utt2spk, text)
    cfg = from_dict(
        ASRTrainConfig,
        {
            "model": {
                "head": "blstm",
                "head_layers": 1,
                "head_dim": 64,
                "subsample": 2,
                "dropout": 0.0,
                "specaug": {"time_masks": 0, "feature_masks": 0},
            },
            "trainer": {
                "max_updates": 200,
                "lr": 1.5e-2,
                "warmup_updates": 10,
                "save_every": 200,
                "log_every": 50,
                "progress_bar": False,
                "max_batch_seconds": 10,
            },
        },
    )
    return Path(asr_train(cfg, root / "data", root / "exp")["model"])
