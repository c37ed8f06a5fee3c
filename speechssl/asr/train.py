"""CTC fine-tuning (``speechssl asr-train``) of any upstream with the one Trainer.

An ASR YAML holds values only::

    tokenizer: {kind: char}                # char | unigram | bpe (sentencepiece), vocab_size
    model: {upstream: fbank, head: blstm, head_layers: 2, head_dim: 256, subsample: 2,
            freeze_updates: 0, specaug: {time_masks: 2, feature_masks: 2}}
    trainer: {max_updates: 3000, lr: 1.0e-3, ...}     # speechssl.train.TrainerConfig
    data: {max_seconds: 30}

The tokenizer is trained on the training transcripts and saved in ``<exp>/tokenizer/``
(``tokens.txt``, plus ``sp.model`` for sentencepiece); a resumed run reuses it. When training
ends the inference model is written to ``<exp>/model.pt`` with ``<exp>/tokens.txt`` beside it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechssl.asr.augment import AugmentConfig
from speechssl.asr.dataset import ASRDataset, JointASRDataset
from speechssl.asr.model import ASRConfig, CTCModel, model_config, save_model
from speechssl.asr.tokenizer import build_tokenizer, load_tokenizer
from speechssl.data.kaldi import DataDirError, read_table
from speechssl.train import Trainer, TrainerConfig
from speechssl.train.rng import seed_everything
from speechssl.upstream import load_upstream


@dataclass
class TokenizerConfig:
    kind: str = "char"  # char | unigram | bpe
    vocab_size: int = 256  # sentencepiece only


@dataclass
class ASRDataConfig:
    max_seconds: float | None = 30.0  # drop longer training utterances (memory)
    # self-training (`asr-train --unlabeled DIR`, a `speechssl pseudo-label` data dir):
    labeled_ratio: float = 0.5  # fraction of an epoch's utterances from the labeled set
    pseudo_scale: float = 1.0  # loss weight of a pseudo-labelled utterance (times confidence)
    pseudo_confidence: bool = True  # weight each pseudo label by its utt2weight
    # hard: CTC on the pseudo-label; soft: frame-level KL toward the teachers' averaged CTC
    # posteriors (<pseudo>/soft_targets.pt); both: the sum (the KL term times soft_scale)
    pseudo_targets: str = "hard"
    soft_scale: float = 1.0
    # input noise on the training sets (the noisy student's; see speechssl.asr.augment)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ASRTrainConfig:
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ASRConfig = field(default_factory=ASRConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    data: ASRDataConfig = field(default_factory=ASRDataConfig)


def _tokenizer(cfg: ASRTrainConfig, train_dir: Path, exp_dir: Path):
    folder = exp_dir / "tokenizer"
    if (folder / "tokens.txt").is_file():
        return load_tokenizer(folder)  # a resumed run keeps its vocabulary
    text_file = train_dir / "text"
    if not text_file.is_file():
        raise DataDirError(
            f"{train_dir}: no 'text' file; ASR training needs transcripts (a Kaldi data dir "
            f"with wav.scp and text; check it with `speechssl data validate {train_dir}`)"
        )
    texts = [t for t in read_table(text_file).values() if t.strip()]
    if not texts:
        raise DataDirError(f"{text_file}: no transcripts; ASR training needs some")
    return build_tokenizer(cfg.tokenizer.kind, texts, folder, cfg.tokenizer.vocab_size)


def asr_train(
    cfg: ASRTrainConfig,
    train_dir: str | os.PathLike,
    exp_dir: str | os.PathLike,
    valid_dir: str | os.PathLike | None = None,
    resume: bool = True,
    unlabeled_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train a CTC model; returns the Trainer's summary plus ``model`` (the saved model path).
    With ``unlabeled_dir`` (pseudo-labelled: ``text`` + ``utt2weight``), train on both sets:
    see :class:`~speechssl.asr.dataset.JointASRDataset`; the tokenizer comes from the labeled
    transcripts only."""
    train_dir, exp_dir = Path(train_dir), Path(exp_dir)
    seed_everything(cfg.trainer.seed)
    tokenizer = _tokenizer(cfg, train_dir, exp_dir)
    augment = cfg.data.augment
    train_set = ASRDataset(train_dir, tokenizer, cfg.data.max_seconds, augment)
    if unlabeled_dir is not None:  # labeled + pseudo-labelled, weighted (self-training)
        pseudo = ASRDataset(unlabeled_dir, tokenizer, cfg.data.max_seconds, augment)
        train_set = JointASRDataset(
            train_set,
            pseudo,
            cfg.data.labeled_ratio,
            cfg.data.pseudo_scale,
            cfg.data.pseudo_confidence,
            cfg.data.pseudo_targets,
            cfg.data.soft_scale,
            tokenizer.tokens,
        )
    valid_set = ASRDataset(valid_dir, tokenizer) if valid_dir is not None else None
    model = CTCModel(load_upstream(cfg.model.upstream), tokenizer.tokens, cfg.model)
    trainer = Trainer(
        model, train_set, cfg.trainer, exp_dir, valid_dataset=valid_set, config=model_config(model)
    )
    result = trainer.train(resume=resume)
    if trainer.dist.is_main and trainer.num_updates >= cfg.trainer.max_updates:
        result["model"] = str(save_model(model, exp_dir / "model.pt"))
        shutil.copyfile(exp_dir / "tokenizer" / "tokens.txt", exp_dir / "tokens.txt")
    return result
