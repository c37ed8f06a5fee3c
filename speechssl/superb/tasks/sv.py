"""SUPERB speaker verification (SV / ASV): an x-vector trained with AM-softmax over the training
speakers; trials scored by the cosine of utterance embeddings. The task, loss and scoring follow
s3prl ``sv_voxceleb1`` (``configs/amsoftmax.yaml``); **the head is ours, not s3prl's**: s3prl
builds its own x-vector (ReLU TDNN layers + an utterance-level statistics pooling), while this
probe uses speechbrain's ``Xvector`` and ECAPA cosine ``Classifier`` (speechbrain is a chosen
dependency, and its x-vector is the field's reference implementation). Results are labelled as
this toolkit's, not comparable to the SUPERB leaderboard's SV column.

- Head: Linear(D -> 512), then speechbrain's ``Xvector`` (5 TDNN layers, context 5/3/3/1/1,
  dilation 1/2/3/1/1, 512/512/512/512/1500 channels, mean+std statistics pooling over the valid
  frames, Linear -> 512-d embedding), then a cosine classifier (speechbrain ECAPA ``Classifier``:
  normalised weights, one row per training speaker).
- Loss: AM-softmax (additive margin on the cosine, m = 0.4, s = 30: speechbrain
  ``AngularMargin`` inside ``LogSoftmaxWrapper``), one unit per utterance.
- Scoring: cosine similarity of the enrollment and test embeddings of each trial; EER (percent,
  the main metric, lower is better) and minDCF at p_target = 0.01 (:mod:`..sv_metrics`).
- Model selection: on the **dev** trial list. s3prl has no dev set and reports the best of its
  checkpoints on the test trials (protocol problem 1); the test trials here are only scored for
  the report.

Data: ``speakers/sv_{train,dev,test}``: ``utt2spk`` (the labels; dev/test speakers are disjoint
from the training speakers) and, in dev and test, ``trials``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

from speechssl.data.kaldi import DataDir
from speechssl.superb.sv_metrics import (
    P_TARGET,
    cosine_scores,
    read_trials,
    verification_metrics,
)
from speechssl.superb.tasks.base import ProbeBatch, Task

XVECTOR_CHANNELS = (512, 512, 512, 512, 1500)


class XvectorHead(nn.Module):
    """Projection -> x-vector -> cosine scores against one weight vector per speaker."""

    def __init__(
        self,
        input_dim: int,
        speakers: Sequence[str],
        projection_dim: int = 512,
        tdnn_channels: Sequence[int] = XVECTOR_CHANNELS,
        embedding_dim: int = 512,
    ):
        super().__init__()
        from speechbrain.lobes.models.ECAPA_TDNN import Classifier
        from speechbrain.lobes.models.Xvector import Xvector

        self.speakers = list(speakers)
        self.speaker_index = {spk: i for i, spk in enumerate(self.speakers)}
        self.projector = nn.Linear(input_dim, projection_dim)
        self.xvector = Xvector(
            tdnn_blocks=len(tdnn_channels),
            tdnn_channels=list(tdnn_channels),
            lin_neurons=embedding_dim,
            in_channels=projection_dim,
        )
        self.classifier = Classifier(embedding_dim, lin_blocks=0, out_neurons=len(self.speakers))

    def embed(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` features, ``(B,)`` valid frames -> ``(B, E)`` embeddings."""
        relative = lengths.to(features.device).float() / features.shape[1]
        return self.xvector(self.projector(features), relative).squeeze(1)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, 1, num_speakers)`` cosine similarities (before margin and scale)."""
        return self.classifier(self.embed(features, lengths).unsqueeze(1))


class SpeakerVerification(Task):
    name = "sv"
    metric = "eer"
    higher_is_better = False
    max_train_seconds = 8.0  # s3prl max_timestep 128000 samples
    # s3prl sv_voxceleb1 (configs/amsoftmax.yaml): torch AdamW (weight decay 0.01), lr 1e-4,
    # gradient clipping 1e3, batch 10 x 5 accumulated, 200k steps
    default_lr = 1e-4
    optimizer = "adamw"
    grad_clip = 1e3
    batch_size = 50
    default_steps = 200_000

    def __init__(
        self,
        projection_dim: int = 512,
        tdnn_channels: Sequence[int] = XVECTOR_CHANNELS,
        embedding_dim: int = 512,
        margin: float = 0.4,
        scale: float = 30.0,
        p_target: float = P_TARGET,
    ):
        from speechbrain.nnet.losses import AngularMargin, LogSoftmaxWrapper

        self.projection_dim, self.embedding_dim = projection_dim, embedding_dim
        self.tdnn_channels = tuple(tdnn_channels)
        self.p_target = p_target
        self.am_softmax = LogSoftmaxWrapper(AngularMargin(margin=margin, scale=scale))

    def splits(self, data: Path) -> list[dict[str, Path]]:
        return [{s: Path(data) / "speakers" / f"sv_{s}" for s in ("train", "dev", "test")}]

    def targets(self, split_dir: Path) -> dict[str, str]:
        """utt -> speaker; a dev/test dir's trial list is checked against its utterances."""
        utt2spk = DataDir.load(split_dir).utt2spk
        if (Path(split_dir) / "trials").exists():
            read_trials(Path(split_dir) / "trials", known_utts=utt2spk)
        return utt2spk

    def build_head(self, input_dim: int, stride: int, train_dir: Path) -> nn.Module:
        speakers = sorted(set(DataDir.load(train_dir).utt2spk.values()))
        if len(speakers) < 2:
            raise ValueError(f"{train_dir}/utt2spk: SV training needs at least 2 speakers")
        return XvectorHead(
            input_dim, speakers, self.projection_dim, self.tdnn_channels, self.embedding_dim
        )

    def loss(self, head: nn.Module, batch: ProbeBatch) -> tuple[torch.Tensor, int]:
        """Summed AM-softmax loss over the batch's utterances."""
        unknown = [s for s in batch.targets if s not in head.speaker_index]
        if unknown:
            raise ValueError(
                f"SV: speaker '{unknown[0]}' is not among the {len(head.speakers)} training "
                "speakers the head was built with; train on the data dir the head was built from"
            )
        labels = torch.tensor([head.speaker_index[s] for s in batch.targets])
        cosines = head(batch.features, batch.lengths)
        mean = self.am_softmax(cosines, labels.to(cosines.device).unsqueeze(1))
        return mean * len(labels), len(labels)

    @torch.no_grad()
    def embeddings(self, head: nn.Module, batches: Iterable[ProbeBatch]) -> dict[str, torch.Tensor]:
        """utt -> ``(E,)`` embedding (on the CPU)."""
        out = {}
        for batch in batches:
            for utt, emb in zip(batch.utt_ids, head.embed(batch.features, batch.lengths).cpu()):
                out[utt] = emb
        return out

    def evaluate(
        self, head: nn.Module, batches: Iterable[ProbeBatch], split_dir: Path
    ) -> dict[str, float]:
        """``eer`` (%), ``min_dcf`` and trial counts on the trial list of ``split_dir``."""
        trials_path = Path(split_dir) / "trials"
        trials = read_trials(trials_path, known_utts=DataDir.load(split_dir).utt2spk)
        scores = cosine_scores(self.embeddings(head, batches), trials, where=str(trials_path))
        return verification_metrics(scores, trials, self.p_target)

    def chance(self, train_dir: Path, test_dir: Path) -> float:
        """Scores unrelated to the speakers: 50% EER."""
        return 50.0
