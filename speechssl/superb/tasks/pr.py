"""PR, phoneme recognition (LibriSpeech with g2p phones; here the synthesizer's own phones).

Labels: ``phones/{train,dev,test}/utt2phones`` (space-separated phones). Head:
Linear(D -> 256) then Linear(256 -> phones + blank), no nonlinearity (s3prl ``ctc/expert.py``);
CTC (``zero_infinity``); Adam 1e-2; 100k steps. Decoding is greedy
(``CTCDecoder(tokens, kind="phones")``); PER (percent) is jiwer's word error rate over phone
strings.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import jiwer
import torch
from torch import nn
from torch.nn import functional as F

from speechssl.superb.tasks.base import ProbeBatch, Task, read_labels
from speechssl.superb.tasks.utterance import standard_splits

BLANK = "<blank>"


class FrameLevelHead(nn.Module):
    """``(features (B, T, D), lengths) -> log-probabilities (B, T, V)``: two linear layers."""

    def __init__(self, input_dim: int, vocab_size: int, projector_dim: int = 256):
        super().__init__()
        self.projector = nn.Linear(input_dim, projector_dim)
        self.linear = nn.Linear(projector_dim, vocab_size)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.linear(self.projector(features)), dim=-1)


def ctc_loss_sum(
    log_probs: torch.Tensor, lengths: torch.Tensor, targets: list[list[int]]
) -> torch.Tensor:
    """Summed CTC loss of a batch; ``log_probs`` ``(B, T, V)`` with the blank at 0."""
    target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
    flat = torch.tensor([i for t in targets for i in t], dtype=torch.long, device=log_probs.device)
    return F.ctc_loss(
        log_probs.transpose(0, 1).float(),
        flat,
        lengths.cpu(),
        target_lengths,
        blank=0,
        reduction="sum",
        zero_infinity=True,
    )


class PhonemeRecognition(Task):
    name = "pr"
    metric = "per"
    higher_is_better = False
    default_lr = 1e-2
    default_steps = 100_000
    split_names = {"train": "phones/train", "dev": "phones/dev", "test": "phones/test"}

    def __init__(self, projector_dim: int = 256):
        self.projector_dim = projector_dim

    def splits(self, data: Path) -> list[dict[str, Path]]:
        return standard_splits(data, self.split_names)

    def targets(self, split_dir: Path) -> dict[str, list[str]]:
        return {u: v.split() for u, v in read_labels(split_dir, "utt2phones").items()}

    def build_head(self, input_dim: int, stride: int, train_dir: Path) -> nn.Module:
        phones = sorted({p for ps in self.targets(train_dir).values() for p in ps})
        head = FrameLevelHead(input_dim, len(phones) + 1, self.projector_dim)
        head.tokens = [BLANK, *phones]
        return head

    def loss(self, head: nn.Module, batch: ProbeBatch) -> tuple[torch.Tensor, int]:
        index = {p: i for i, p in enumerate(head.tokens)}
        targets = [[index[p] for p in phones] for phones in batch.targets]
        log_probs = head(batch.features, batch.lengths)
        return ctc_loss_sum(log_probs, batch.lengths, targets), len(batch.utt_ids)

    @torch.no_grad()
    def evaluate(
        self, head: nn.Module, batches: Iterable[ProbeBatch], split_dir: Path
    ) -> dict[str, float]:
        from speechssl.asr.decode import CTCDecoder

        head.eval()
        decoder = CTCDecoder(head.tokens, kind="phones")
        refs, hyps = [], []
        for batch in batches:
            log_probs = head(batch.features, batch.lengths).cpu()
            for b, phones in enumerate(batch.targets):
                hyps.append(decoder.greedy(log_probs[b, : int(batch.lengths[b])]).text)
                refs.append(" ".join(phones))
        out = jiwer.process_words(refs, hyps)
        return {
            self.metric: 100.0 * out.wer,
            "substitutions": float(out.substitutions),
            "deletions": float(out.deletions),
            "insertions": float(out.insertions),
            "utterances": float(len(refs)),
        }

    def chance(self, train_dir: Path, test_dir: Path) -> float:
        """An empty output: every phone deleted, 100% PER."""
        return 100.0
