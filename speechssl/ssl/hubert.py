"""HuBERT (Hsu et al. 2021): masked prediction of k-means cluster labels.

The backbone is wav2vec 2.0's (:class:`~speechssl.ssl.wav2vec2.Wav2Vec2Model`); targets come
from :mod:`speechssl.kmeans` (MFCC clusters for iteration 1, clusters of an earlier model's
hidden states after). With o_t the last hidden state, A = ``final_proj`` and e_c the rows of
``label_embs_concat`` (paper eq. 2, fairseq ``hubert.py`` + ``hubert_criterion.py``)::

    p(c | X~, t) = softmax_c( cos(A o_t, e_c) / 0.1 )
    L = w_m · Σ_{t masked} CE + w_u · Σ_{t unmasked} CE + 10 · S · mean(conv_features²)

over non-padded frames that have a label, S = masked frames (``ModelOutput.sample_size``).
fairseq scores the positive against every class with the duplicate at -inf, which is the same
cross-entropy over the C classes.

Labels reach model frames through :func:`align_labels`: frame t takes
label ``floor(t · label_rate / frame_rate)`` (fairseq's ``feat2tar_ratio``: every 2nd label
for 100 Hz MFCC labels and 50 Hz frames) after checking both cover the same audio. Frames past
the last label are ignored (fairseq drops them from the encoder input instead).

Only one label set is supported, so ``untie_final_proj`` (one projection per label set) has no
effect; it is kept for fairseq config parity.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from speechssl.data.audio import SAMPLE_RATE
from speechssl.data.dataset import IGNORE_LABEL
from speechssl.errors import SpeechSSLError
from speechssl.ssl import SSLMethod, get_method, register_method
from speechssl.ssl.convert_families import hubert_from_fairseq, hubert_from_hf
from speechssl.ssl.masked import LARGE_BACKBONE, TINY_BACKBONE, MaskedPretraining
from speechssl.ssl.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model
from speechssl.train.protocol import ModelOutput


class LabelAlignmentError(SpeechSSLError, ValueError):
    """Labels and model frames of an utterance describe audio of different lengths."""


def align_labels(
    labels: torch.Tensor,
    label_rate: float,
    num_frames: int,
    frame_rate: float,
    utt: str = "?",
    tolerance_s: float = 0.1,
) -> torch.Tensor:
    """Labels of the model's frames: frame t takes ``labels[floor(t * label_rate / frame_rate)]``.

    Args:
        labels: ``(L,)`` labels of one utterance at ``label_rate`` Hz.
        num_frames: model frames at ``frame_rate`` Hz.
    Returns:
        ``(num_frames,)`` long; frames past the last label get -100 (ignored by the loss).
    Raises:
        LabelAlignmentError naming ``utt`` if the two durations differ by more than
        ``tolerance_s`` (fairseq's dataset allows 0.1 s).
    """
    labels_s, frames_s = len(labels) / label_rate, num_frames / frame_rate
    if abs(labels_s - frames_s) > tolerance_s:
        raise LabelAlignmentError(
            f"utterance '{utt}': {len(labels)} labels at {label_rate:g} Hz ({labels_s:.2f} s) but "
            f"{num_frames} model frames at {frame_rate:g} Hz ({frames_s:.2f} s); the labels were "
            "made from other audio or at another rate (check labels.yaml), dump them again"
        )
    idx = (torch.arange(num_frames, dtype=torch.float64) * (label_rate / frame_rate)).long()
    out = torch.full((num_frames,), IGNORE_LABEL, dtype=torch.long)
    ok = idx < len(labels)
    out[ok] = labels.to(torch.long)[idx[ok]]
    return out


@dataclass
class HubertConfig(Wav2Vec2Config):
    """HuBERT settings; defaults are BASE (fairseq ``hubert_base_librispeech``). Backbone and
    masking fields are wav2vec 2.0's; its quantizer and contrastive fields are unused."""

    mask_prob: float = 0.8
    final_dim: int = 256  # space of the projected outputs and the label embeddings
    untie_final_proj: bool = True  # one projection per label set (one set here: no effect)
    num_classes: int = 100  # k-means clusters of the labels
    label_rate: float = 100.0  # labels per second (100: MFCC, iteration 1; 50: hidden states)
    label_tolerance_s: float = 0.1  # labels and frames may differ by this much audio
    logit_temperature: float = 0.1
    pred_masked_weight: float = 1.0  # alpha of the paper; 1 is best
    pred_nomask_weight: float = 0.0
    feature_penalty_weight: float = 10.0


PRESETS: dict[str, dict[str, Any]] = {
    "base": {},
    # fairseq hubert_large_librivox (+ HF facebook/hubert-large-ll60k's conv_bias)
    "large": dict(LARGE_BACKBONE, label_rate=50.0, num_classes=500),
    "tiny": dict(TINY_BACKBONE, final_dim=64),
}


def hubert_config(preset: str = "base", **overrides: Any) -> HubertConfig:
    """A preset (``"tiny"``, ``"base"``, ``"large"``) with field overrides."""
    return get_method("hubert").make_config(preset, **overrides)


def hubert_config_for_labels(
    label_dir: str | Path, preset: str = "base", **overrides: Any
) -> HubertConfig:
    """A preset whose ``num_classes`` and ``label_rate`` come from ``<label_dir>/labels.yaml``
    (written by :func:`speechssl.kmeans.dump_labels`)."""
    meta = yaml.safe_load((Path(label_dir) / "labels.yaml").read_text())
    values = {"num_classes": int(meta["clusters"]), "label_rate": float(meta["rate"])}
    return hubert_config(preset, **{**values, **overrides})


class HubertPretraining(MaskedPretraining):
    """Masked cluster prediction: ``forward(batch) -> ModelOutput``.

    ``batch`` has ``wavs`` ``(B, S)``, ``lengths`` ``(B,)``, ``labels`` ``(B, L)`` padded with
    -100 at ``cfg.label_rate``, optionally ``label_lengths`` ``(B,)`` and ``utt_ids``.
    """

    method = "hubert"
    backbone_cls = Wav2Vec2Model

    def __init__(self, cfg: HubertConfig):
        super().__init__(cfg)
        self.final_proj = nn.Linear(cfg.hidden_size, cfg.final_dim)
        self.label_embs_concat = nn.Parameter(torch.rand(cfg.num_classes, cfg.final_dim))

    @property
    def frame_rate(self) -> float:
        return SAMPLE_RATE / self.backbone.stride

    def frame_targets(self, batch: Any, lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``(B, T)`` label of every model frame (-100: padding or no label)."""
        labels = getattr(batch, "labels", None)
        if labels is None:
            raise ValueError(
                "hubert pretraining needs frame labels: give the dataset a label_file "
                "(k-means labels from `speechssl kmeans dump`) and its label_rate"
            )
        label_lengths = getattr(batch, "label_lengths", None)
        if label_lengths is None:
            label_lengths = (labels != IGNORE_LABEL).sum(1)
        utt_ids = getattr(batch, "utt_ids", None) or [f"#{b}" for b in range(len(labels))]
        out = torch.full((len(labels), num_frames), IGNORE_LABEL, dtype=torch.long)
        for b in range(len(labels)):
            n = int(lengths[b])
            out[b, :n] = align_labels(
                labels[b, : int(label_lengths[b])].cpu(),
                self.cfg.label_rate,
                n,
                self.frame_rate,
                utt_ids[b],
                self.cfg.label_tolerance_s,
            )
        bad = (out != IGNORE_LABEL) & ((out < 0) | (out >= self.cfg.num_classes))
        if bool(bad.any()):
            b = int(bad.any(1).nonzero()[0])
            raise ValueError(
                f"utterance '{utt_ids[b]}': label {int(out[b][bad[b]][0])} is outside "
                f"0..{self.cfg.num_classes - 1}; set num_classes to the k-means cluster count"
            )
        return out.to(labels.device)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` hidden states -> ``(N, C)`` cosine logits over the classes, fp32 (also
        under bf16 autocast: the logits span [-10, 10])."""
        proj = self.final_proj(hidden)
        with torch.autocast(proj.device.type, enabled=False):
            proj = F.normalize(proj.float(), dim=-1, eps=1e-8)
            embs = F.normalize(self.label_embs_concat.float(), dim=-1, eps=1e-8)
            return proj @ embs.T / self.cfg.logit_temperature

    def forward(self, batch: Any, generator: torch.Generator | None = None) -> ModelOutput:
        cfg = self.cfg
        enc = self.encode_masked(batch, generator)
        targets = self.frame_targets(batch, enc.lengths, enc.mask.shape[1])
        mask, hidden = enc.mask, enc.hidden

        labelled = targets != IGNORE_LABEL
        stats: dict[str, torch.Tensor] = {}
        losses = {}
        for name, sel in (("m", mask & labelled), ("u", ~mask & labelled)):
            logits = self.logits(hidden[sel])
            target = targets[sel]
            losses[name] = F.cross_entropy(logits, target, reduction="sum")
            count = max(int(sel.sum()), 1)
            stats[f"loss_{name}"] = losses[name].detach() / count
            stats[f"acc_{name}"] = (logits.argmax(-1) == target).sum().float() / count
        # fairseq's hubert_criterion: the frames of every loss term with a weight > 0
        sample_size = int((mask & labelled).sum()) if cfg.pred_masked_weight > 0 else 0
        sample_size += int((~mask & labelled).sum()) if cfg.pred_nomask_weight > 0 else 0
        loss = (
            cfg.pred_masked_weight * losses["m"]
            + cfg.pred_nomask_weight * losses["u"]
            + cfg.feature_penalty_weight * enc.features_pen * sample_size
        )
        stats["features_pen"] = enc.features_pen.detach()
        stats["mask_fraction"] = mask.sum().float() / enc.valid.sum().clamp(min=1)
        return ModelOutput(loss=loss, sample_size=sample_size, stats=stats)


register_method(
    SSLMethod(
        "hubert",
        HubertConfig,
        HubertPretraining,
        Wav2Vec2Model,
        PRESETS,
        hf_model_types=("hubert",),
        from_hf=hubert_from_hf,
        fairseq_models=("hubert",),
        from_fairseq=hubert_from_fairseq,
    )
)
