"""Utterances with their transcripts as CTC token targets."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from speechssl.asr.augment import AugmentConfig, perturb
from speechssl.data.dataset import AudioDataset, AudioItem
from speechssl.data.kaldi import DataDirError, read_table
from speechssl.data.text import normalize_text


class ASRDataset(AudioDataset):
    """A data dir's audio (whole utterances, padded in batches) and ``text`` encoded by
    ``tokenizer``; ``AudioBatch.labels`` holds the token ids (padded with -100).

    Utterances longer than ``max_seconds`` are dropped with a warning (memory), and so are those
    whose transcript normalises to nothing; a missing transcript is an error naming the data dir
    and the utterance. With ``augment`` (training sets only), every loaded utterance goes through
    :func:`speechssl.asr.augment.perturb`, seeded by the batch seed and its index.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        tokenizer,
        max_seconds: float | None = None,
        augment: AugmentConfig | None = None,
    ):
        super().__init__(data_dir, crop=None)
        self.augment = augment if augment is not None and augment.active else None
        text_file = Path(data_dir) / "text"
        if not text_file.is_file():
            raise DataDirError(f"{data_dir}: no 'text' file; ASR training needs transcripts")
        text = read_table(text_file)
        missing = [u for u in self.utt_ids if u not in text]
        if missing:
            raise DataDirError(
                f"{text_file}: no transcript for {len(missing)} utterance(s), e.g. "
                f"'{missing[0]}'; add them or subset the data dir (`speechssl data subset`)"
            )
        keep, dropped = [], {"empty transcript": [], f"longer than {max_seconds} s": []}
        for i, utt in enumerate(self.utt_ids):
            if not normalize_text(text[utt]):
                dropped["empty transcript"].append(utt)
            elif max_seconds is not None and self.num_samples[i] > max_seconds * self.sample_rate:
                dropped[f"longer than {max_seconds} s"].append(utt)
            else:
                keep.append(i)
        for reason, utts in dropped.items():
            if utts:
                warnings.warn(
                    f"{data_dir}: skipping {len(utts)} utterance(s) with {reason}, e.g. "
                    f"'{utts[0]}'",
                    stacklevel=2,
                )
        if not keep:
            raise DataDirError(f"{data_dir}: no utterance left to train on")
        self.utt_ids = [self.utt_ids[i] for i in keep]
        self.num_samples = [self.num_samples[i] for i in keep]
        self.texts = {u: normalize_text(text[u]) for u in self.utt_ids}
        self.labels = {
            u: torch.tensor(tokenizer.encode(self.texts[u]), dtype=torch.long) for u in self.utt_ids
        }
        # the sample ensemble (`speechssl pseudo-label --combine sample` writes every teacher's
        # label as utt2text<i>): a seeded load draws one of them, an unseeded one keeps `text`
        names = sorted(n for n in self.data.tables if re.fullmatch(r"utt2text\d+", n))
        self.choices: dict[str, list[torch.Tensor]] = {}
        for u in self.utt_ids if names else ():
            options = [normalize_text(self.data.tables[n].get(u, "")) for n in names]
            encoded = [torch.tensor(tokenizer.encode(o), dtype=torch.long) for o in options if o]
            if encoded:
                self.choices[u] = encoded

    def load_noisy(self, index: int, seed: int | None) -> AudioItem:
        """Utterance ``index`` through the input noise (when configured) drawn from ``seed``."""
        item = self.load(index)
        if self.augment is not None:
            rng = np.random.default_rng([0 if seed is None else seed, index])
            item.wav = perturb(item.wav, self.augment, rng)
        choices = self.choices.get(item.utt_id)
        if choices and seed is not None:  # its own stream: the same draw with or without noise
            item.labels = choices[
                int(np.random.default_rng([seed, index, 1]).integers(len(choices)))
            ]
        return item

    def __getitems__(self, indices):
        seed = getattr(indices, "seed", None)
        return [self.load_noisy(i, seed) for i in indices]

    def _check_label_count(self, path, utt, found, samples) -> None:
        """Token targets are not tied to the frame rate; CTC only needs enough frames, which the
        loss's ``zero_infinity`` handles."""


PSEUDO_TARGETS = ("hard", "soft", "both")
SOFT_FORMAT = "speechssl-soft-targets-v1"


def load_soft_targets(pseudo: ASRDataset, tokens: list[str] | None) -> dict[str, torch.Tensor]:
    """``<pseudo dir>/soft_targets.pt`` (``speechssl pseudo-label --soft-targets``): utt ->
    (T, V) float32 teacher posteriors, checked against the student's ``tokens``."""
    path = Path(pseudo.data.path) / "soft_targets.pt"
    if not path.is_file():
        raise DataDirError(
            f"{path}: missing; data.pseudo_targets soft/both needs the teachers' posteriors "
            "(`speechssl pseudo-label --soft-targets`)"
        )
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved.get("format") != SOFT_FORMAT:
        raise DataDirError(f"{path}: not a soft-target file (format {saved.get('format')!r})")
    if tokens is not None and list(saved["tokens"]) != list(tokens):
        raise DataDirError(
            f"{path}: the teachers' tokens differ from the student's; soft targets need the "
            "same vocabulary (train the student's tokenizer on the teachers' labeled text)"
        )
    missing = [u for u in pseudo.utt_ids if u not in saved["posteriors"]]
    if missing:
        raise DataDirError(
            f"{path}: no posteriors for {len(missing)} utterance(s), e.g. '{missing[0]}'"
        )
    return {u: saved["posteriors"][u].float() for u in pseudo.utt_ids}


class JointASRDataset(torch.utils.data.Dataset):
    """Labeled and pseudo-labelled utterances in one epoch, for self-training.

    The labeled set is repeated so that about ``labeled_ratio`` of an epoch's utterances are
    labeled (``labeled_ratio / (1 - labeled_ratio) * len(pseudo)`` labeled items, at least one
    pass); batches are still length-bucketed over the mix, so a batch's ratio varies around it.
    Every item carries a loss weight: 1 for a labeled utterance, ``pseudo_scale`` times its
    ``utt2weight`` value (the pseudo-label's confidence; 1 when absent or ``confidence=False``)
    for a pseudo-labelled one.
    """

    def __init__(
        self,
        labeled: ASRDataset,
        pseudo: ASRDataset,
        labeled_ratio: float = 0.5,
        pseudo_scale: float = 1.0,
        confidence: bool = True,
        targets: str = "hard",
        soft_scale: float = 1.0,
        tokens: list[str] | None = None,
    ):
        if not 0.0 < labeled_ratio < 1.0:
            raise ValueError(f"labeled_ratio must be in (0, 1), found {labeled_ratio}")
        self.labeled, self.pseudo = labeled, pseudo
        self.sample_rate = labeled.sample_rate
        repeats = max(1, round(labeled_ratio / (1 - labeled_ratio) * len(pseudo) / len(labeled)))
        self.index = [(0, i) for _ in range(repeats) for i in range(len(labeled))]
        self.index += [(1, j) for j in range(len(pseudo))]
        table = pseudo.data.tables.get("utt2weight", {}) if confidence else {}
        try:
            self.weights = {u: pseudo_scale * float(table.get(u, 1.0)) for u in pseudo.utt_ids}
        except ValueError as e:
            raise DataDirError(f"{pseudo.data.path}/utt2weight: not a number ({e})") from None
        if targets not in PSEUDO_TARGETS:
            raise ValueError(
                f"data.pseudo_targets must be one of {PSEUDO_TARGETS}, not {targets!r}"
            )
        self.targets, self.soft_scale = targets, soft_scale
        self.soft = load_soft_targets(pseudo, tokens) if targets != "hard" else {}
        self.utt_ids = [(labeled, pseudo)[s].utt_ids[i] for s, i in self.index]
        self.num_labeled = repeats * len(labeled)

    @property
    def durations(self) -> list[float]:
        sets = (self.labeled.durations, self.pseudo.durations)
        return [sets[s][i] for s, i in self.index]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int):
        return self.__getitems__([index])[0]

    def __getitems__(self, indices):
        items, seed = [], getattr(indices, "seed", None)
        for k in indices:
            source, i = self.index[k]
            draw = None if seed is None else seed + k  # a repeated labeled item: new noise
            item = (self.labeled, self.pseudo)[source].load_noisy(i, draw)
            item.weight = 1.0 if source == 0 else self.weights[item.utt_id]
            if source == 1 and self.targets != "hard":
                item.soft, item.soft_weight = self.soft[item.utt_id], self.soft_scale * item.weight
                if self.targets == "soft":
                    item.weight = 0.0  # the distillation term alone
            items.append(item)
        return items
