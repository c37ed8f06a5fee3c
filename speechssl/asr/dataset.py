"""Utterances with their transcripts as CTC token targets."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from speechssl.data.dataset import AudioDataset
from speechssl.data.kaldi import DataDirError, read_table
from speechssl.data.text import normalize_text


class ASRDataset(AudioDataset):
    """A data dir's audio (whole utterances, padded in batches) and ``text`` encoded by
    ``tokenizer``; ``AudioBatch.labels`` holds the token ids (padded with -100).

    Utterances longer than ``max_seconds`` are dropped with a warning (memory), and so are those
    whose transcript normalises to nothing; a missing transcript is an error naming the data dir
    and the utterance.
    """

    def __init__(self, data_dir: str | os.PathLike, tokenizer, max_seconds: float | None = None):
        super().__init__(data_dir, crop=None)
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

    def _check_label_count(self, path, utt, found, samples) -> None:
        """Token targets are not tied to the frame rate; CTC only needs enough frames, which the
        loss's ``zero_infinity`` handles."""


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
        items = []
        for k in indices:
            source, i = self.index[k]
            item = (self.labeled, self.pseudo)[source].load(i)
            item.weight = 1.0 if source == 0 else self.weights[item.utt_id]
            items.append(item)
        return items
