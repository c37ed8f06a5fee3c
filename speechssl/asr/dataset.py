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
