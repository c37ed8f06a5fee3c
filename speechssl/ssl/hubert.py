"""HuBERT (Hsu et al. 2021): masked prediction of k-means cluster labels.

The backbone is wav2vec 2.0's (:class:`~speechssl.ssl.wav2vec2.Wav2Vec2Model`); targets come
from :mod:`speechssl.ssl.kmeans` (MFCC clusters for iteration 1, clusters of an earlier model's
hidden states after). With o_t the last hidden state, A = ``final_proj`` and e_c the rows of
``label_embs_concat`` (paper eq. 2, fairseq ``hubert.py`` + ``hubert_criterion.py``)::

    p(c | X~, t) = softmax_c( cos(A o_t, e_c) / 0.1 )
    L = w_m · Σ_{t masked} CE + w_u · Σ_{t unmasked} CE + 10 · S · mean(conv_features²)

over non-padded frames that have a label, S = masked frames (``ModelOutput.sample_size``).
fairseq scores the positive against every class with the duplicate at -inf, which is the same
cross-entropy over the C classes.

Labels reach model frames through :func:`~speechssl.ssl.kmeans.align_labels`: frame t takes
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
from speechssl.nn.conv_encoder import length_mask
from speechssl.ssl.kmeans import align_labels
from speechssl.ssl.wav2vec2 import MaskedPretraining, Wav2Vec2Config, features_penalty


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
    "large": dict(
        extractor_mode="layer",
        conv_bias=True,
        normalize_waveform=True,
        feature_grad_mult=1.0,
        hidden_size=1024,
        num_layers=24,
        num_heads=16,
        ffn_dim=4096,
        layer_norm_first=True,
        dropout=0.0,
        attention_dropout=0.0,
        final_dim=768,
        label_rate=50.0,
        num_classes=500,
    ),
    # CPU-sized, as wav2vec2's tiny preset
    "tiny": dict(
        conv_layers=[(64, 10, 5)] + [(64, 3, 2)] * 4 + [(64, 2, 2)] * 2,
        hidden_size=128,
        num_layers=3,
        num_heads=4,
        ffn_dim=512,
        pos_conv_kernel=32,
        pos_conv_groups=8,
        layerdrop=0.0,
        feature_grad_mult=1.0,
        final_dim=64,
        mask_length=5,
        # As wav2vec2's tiny: at this size the feature penalty drives the conv outputs to zero,
        # and dropout slows a few-hundred-update run (measured: masked-loss drop 19% -> 23%).
        feature_penalty_weight=0.0,
        dropout=0.0,
        attention_dropout=0.0,
        input_dropout=0.0,
        feature_dropout=0.0,
    ),
}


def hubert_config(preset: str = "base", **overrides: Any) -> HubertConfig:
    """A preset (``"tiny"``, ``"base"``, ``"large"``) with field overrides."""
    if preset not in PRESETS:
        raise ValueError(f"unknown hubert preset {preset!r}; known: {sorted(PRESETS)}")
    return HubertConfig(**{**PRESETS[preset], **overrides})


def hubert_config_for_labels(
    label_dir: str | Path, preset: str = "base", **overrides: Any
) -> HubertConfig:
    """A preset whose ``num_classes`` and ``label_rate`` come from ``<label_dir>/labels.yaml``
    (written by :func:`speechssl.ssl.kmeans.dump_labels`)."""
    meta = yaml.safe_load((Path(label_dir) / "labels.yaml").read_text())
    values = {"num_classes": int(meta["clusters"]), "label_rate": float(meta["rate"])}
    return hubert_config(preset, **{**values, **overrides})


class HubertPretraining(MaskedPretraining):
    """Masked cluster prediction: ``forward(batch) -> ModelOutput``.

    ``batch`` has ``wavs`` ``(B, S)``, ``lengths`` ``(B,)``, ``labels`` ``(B, L)`` padded with
    -100 at ``cfg.label_rate``, optionally ``label_lengths`` ``(B,)`` and ``utt_ids``.
    """

    family = "hubert"

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

    def forward(self, batch: Any, generator: torch.Generator | None = None):
        from speechssl.train.protocol import ModelOutput

        cfg = self.cfg
        feats, lengths = self.conv_features(batch.wavs, batch.lengths)
        t = feats.shape[1]
        valid = length_mask(lengths, t)
        pen = features_penalty(feats, valid)
        x, _ = self.backbone.feature_projection(feats)
        targets = self.frame_targets(batch, lengths, t)
        mask = self.compute_mask(lengths, t, generator)
        hidden = self.backbone.encode(x, lengths, mask).last_hidden_state

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
        sample_size = int((mask & labelled).sum()) if cfg.pred_masked_weight > 0 else 0
        sample_size = sample_size or int((~mask & labelled).sum())
        loss = (
            cfg.pred_masked_weight * losses["m"]
            + cfg.pred_nomask_weight * losses["u"]
            + cfg.feature_penalty_weight * pen * sample_size
        )
        stats["features_pen"] = pen.detach()
        stats["mask_fraction"] = mask.sum().float() / valid.sum().clamp(min=1)
        return ModelOutput(loss=loss, sample_size=sample_size, stats=stats)


def _register() -> None:
    from speechssl.ssl import register_method
    from speechssl.ssl.convert_families import register_hubert_family

    register_method("hubert", HubertConfig, HubertPretraining, hubert_config)
    register_hubert_family()


_register()
