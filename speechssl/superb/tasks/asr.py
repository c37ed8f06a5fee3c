"""ASR, speech recognition (LibriSpeech train-clean-100; here ``asr/train_labeled``).

Head (s3prl ``asr`` config): Linear(D -> H), 2 x BiLSTM with H units per direction (dropout
0.2, no downsampling), Linear(2H -> characters + blank); CTC over characters with ``|`` between
words (:class:`speechssl.asr.tokenizer.CharTokenizer` built from the training transcripts);
SpecAugment-style time and feature masks on the representation during training; Adam 1e-4.
Decoding: greedy for the dev evaluations during training (checkpoint selection). With
``lm=<arpa|binary>``, the selected checkpoint is then decoded on dev by beam search + LM over a
grid of LM weight α (``lm_alphas``) and word bonus β (``lm_betas``); the best pair by dev WER
decodes dev and test, and that dev WER is the one the lr sweep compares (as stage 4 of the
recipe tunes its own model; SUPERB's s3prl fixes the LM weights instead, so this step is ours).
WER in percent through :func:`speechssl.asr.score.score_texts` (jiwer).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from speechssl.features.specaug import SpecAugConfig, spec_augment
from speechssl.nn.rnn import BiLSTM
from speechssl.superb.tasks.base import ProbeBatch, Task, read_labels
from speechssl.superb.tasks.pr import ctc_loss_sum
from speechssl.superb.tasks.utterance import standard_splits

if TYPE_CHECKING:
    from speechssl.asr.decode import CTCDecoder


class BiLSTMCTCHead(nn.Module):
    """``(features (B, T, D), lengths) -> log-probabilities (B, T, V)``."""

    def __init__(self, input_dim: int, vocab_size: int, hidden_size: int, dropout: float = 0.2):
        super().__init__()
        self.projector = nn.Linear(input_dim, hidden_size)
        self.lstm = BiLSTM(hidden_size, hidden_size, num_layers=2, dropout=dropout)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(2 * hidden_size, vocab_size)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.projector(features)
        y = self.lstm(x, lengths)
        return F.log_softmax(self.output(self.dropout(y)), dim=-1)


def probe_spec_augment(features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """s3prl's ``specaug`` widths (no time warping) through the project's one SpecAugment: 2 time
    masks of up to 40 frames (at most a fifth of the utterance each), 4 feature masks of up to
    50 dimensions, capped at D / 8 so that narrow representations (80-d FBANK) keep most of
    their dimensions. ``features``: ``(B, T, D)``."""
    cfg = SpecAugConfig(
        time_masks=2,
        time_mask_frames=40,
        time_mask_max_ratio=0.2,
        feature_masks=4,
        feature_mask_dims=min(50, max(1, features.shape[-1] // 8)),
    )
    return spec_augment(features, lengths, cfg, generator=None)


class SpeechRecognition(Task):
    name = "asr"
    metric = "wer"
    higher_is_better = False
    default_lr = 1e-4
    default_steps = 200_000
    split_names = {"train": "asr/train_labeled", "dev": "asr/dev", "test": "asr/test"}

    def __init__(
        self,
        hidden_size: int = 1024,
        dropout: float = 0.2,
        specaug: bool = True,
        lm: str | None = None,
        lm_alphas: Sequence[float] = (0.25, 0.5, 1.0),
        lm_betas: Sequence[float] = (0.0, 1.5, 3.0),
    ):
        if lm is not None and (not lm_alphas or not lm_betas):
            raise ValueError("lm_alphas and lm_betas: give at least one value each")
        self.hidden_size = hidden_size
        self.dropout = dropout
        self.specaug = specaug
        self.lm = lm
        self.lm_alphas = [float(a) for a in lm_alphas]
        self.lm_betas = [float(b) for b in lm_betas]
        # one decoder per vocabulary, kept across evaluations: the LM loads once per run
        self._decoders: dict[tuple[str, ...], CTCDecoder] = {}

    def splits(self, data: Path) -> list[dict[str, Path]]:
        return standard_splits(data, self.split_names)

    def targets(self, split_dir: Path) -> dict[str, str]:
        return read_labels(split_dir, "text")

    def build_head(self, input_dim: int, stride: int, train_dir: Path) -> nn.Module:
        from speechssl.asr.tokenizer import CharTokenizer

        tokenizer = CharTokenizer.from_texts(self.targets(train_dir).values())
        head = BiLSTMCTCHead(input_dim, len(tokenizer.tokens), self.hidden_size, self.dropout)
        head.tokenizer = tokenizer
        head.lm_weights = None  # (alpha, beta) once tuned: beam search + LM, else greedy
        return head

    def loss(self, head: nn.Module, batch: ProbeBatch) -> tuple[torch.Tensor, int]:
        features = batch.features
        if self.specaug and head.training:
            features = probe_spec_augment(features, batch.lengths)
        targets = [head.tokenizer.encode(text) for text in batch.targets]
        log_probs = head(features, batch.lengths)
        return ctc_loss_sum(log_probs, batch.lengths, targets), len(batch.utt_ids)

    def _decoder(self, head: nn.Module) -> CTCDecoder:
        from speechssl.asr.decode import CTCDecoder

        tokens = tuple(head.tokenizer.tokens)
        if tokens not in self._decoders:  # every evaluation of every run reuses it
            self._decoders[tokens] = CTCDecoder(tokens, lm=self.lm)
        return self._decoders[tokens]

    @staticmethod
    def _emissions(head: nn.Module, batches: Iterable[ProbeBatch]):
        """utt -> ((T, V) log-probabilities on the CPU, reference text)."""
        out = {}
        for batch in batches:
            log_probs = head(batch.features, batch.lengths).cpu()
            for b, utt in enumerate(batch.utt_ids):
                out[utt] = (log_probs[b, : int(batch.lengths[b])], batch.targets[b])
        return out

    def _score(self, decoder, emissions, lm_weights) -> dict[str, float]:
        from speechssl.asr.score import score_texts

        if lm_weights is not None:
            decoder = decoder.with_config(alpha=lm_weights[0], beta=lm_weights[1])
        hyps, refs = {}, {}
        for utt, (emission, ref) in emissions.items():
            best = (
                decoder.greedy(emission) if lm_weights is None else decoder.beam_search(emission)[0]
            )
            hyps[utt], refs[utt] = best.text, ref
        summary, _ = score_texts(refs, hyps)
        return {
            self.metric: summary.wer,
            "cer": summary.cer,
            "ser": summary.ser,
            "utterances": float(summary.utterances),
        }

    @torch.no_grad()
    def evaluate(
        self, head: nn.Module, batches: Iterable[ProbeBatch], split_dir: Path
    ) -> dict[str, float]:
        head.eval()
        weights = getattr(head, "lm_weights", None)  # set by tune()
        return self._score(self._decoder(head), self._emissions(head, batches), weights)

    @torch.no_grad()
    def tune(self, head: nn.Module, batches: Iterable[ProbeBatch]) -> dict:
        """With an LM: (alpha, beta) by dev WER of beam search + LM over the grid; kept on
        ``head`` for the final dev and test decodes. Ties go to the smaller alpha, beta."""
        if self.lm is None:
            return {}
        head.eval()
        decoder, emissions = self._decoder(head), self._emissions(head, batches)
        grid = [(a, b) for a in self.lm_alphas for b in self.lm_betas]
        wers = {pair: self._score(decoder, emissions, pair)[self.metric] for pair in grid}
        alpha, beta = min(grid, key=lambda pair: (wers[pair], pair))
        head.lm_weights = (alpha, beta)
        return {
            "alpha": alpha,
            "beta": beta,
            "dev_wer_greedy": self._score(decoder, emissions, None)[self.metric],
            "grid": [{"alpha": a, "beta": b, "wer": wers[(a, b)]} for a, b in grid],
        }

    def chance(self, train_dir: Path, test_dir: Path) -> float:
        """An empty output: every word deleted, 100% WER."""
        return 100.0
