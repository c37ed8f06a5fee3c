"""TERA (Liu et al. 2021) and Mockingjay (Liu et al. 2020): reconstruct altered log-Mel frames.

A post-LN Transformer reads an utterance-normalised 80-d fbank whose frames were altered, and a
prediction head reconstructs the clean frames. With x the clean features, x~ the altered ones,
M the selected time-frequency bins and P the head (s3prl ``pretrain/mockingjay/task.py``,
``upstream/mockingjay/model.py``)::

    L = Σ_{(b, t, f) in M} | P(Transformer(x~))_{btf} - x_{btf} |

``ModelOutput.sample_size`` = |M|, so loss / sample_size is s3prl's ``L1Loss`` over the selected
bins. The alterations (:func:`alter_spectrogram`, drawn from a ``torch.Generator``):

- time (T): ``round(n · mask_proportion / mask_consecutive)`` span starts drawn without
  replacement from ``0 .. n - mask_consecutive - 1``, spans of ``mask_consecutive`` frames that
  may overlap; one die per utterance: 80% zero the spans, 10% replace them with other spans of
  the same utterance, 10% leave them; all spans are in M (every bin);
- frequency (F): one band of ``randint(0, int(mask_frequency · n_mels))`` bins zeroed over the
  utterance, in M over its valid frames;
- magnitude (M): with probability ``noise_proba``, one die per batch, N(0, ``noise_std``²) added
  to every input bin (s3prl's ``noise_proportion``); not in M.

Mockingjay is the time-only configuration (``mask_frequency = noise_proba = 0``), registered
as its own method from this module. The backbone never alters its input: an exported upstream
is Transformer(fbank). The pretraining model alters in training and validation alike (the
objective is the masked reconstruction), from a generator seeded by the update number as the
masked methods (:func:`~speechssl.ssl.masking.step_generator`), so a resumed run draws the same
alterations. Unlike s3prl, utterance gain is not normalised to -25 dB first: the per-utterance
mean normalisation of the log-Mel removes a gain anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from speechssl.features.extract import FeatureConfig, batch_features
from speechssl.nn.conv_encoder import length_mask
from speechssl.nn.transformer import TransformerLayer, bert_init
from speechssl.ssl import SSLMethod, export_backbone, get_method, register_method
from speechssl.ssl.masking import StepGenerators
from speechssl.train.protocol import ModelOutput

# s3prl time-mask dice: P(zero) = 0.8, P(random frames) = 0.1, P(unchanged) = 0.1
ZERO, RANDOM, UNCHANGED, NO_SPANS = 0, 1, 2, -1


@dataclass
class TeraConfig:
    """TERA/Mockingjay settings; defaults are TERA BASE (s3prl ``logMelBase-T-F-M.yaml`` with
    dropout 0.1, as the released ``tera_logMelBase_T_F_M_AdamW_b32_1m_960hr_drop1``)."""

    num_mel_bins: int = 80  # Kaldi fbank, 25 ms windows every 10 ms, per-utterance CMVN
    hidden_size: int = 768
    num_layers: int = 3
    num_heads: int = 12
    ffn_dim: int = 3072
    dropout: float = 0.1  # input embedding and residual branches (s3prl hidden_dropout_prob)
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    mask_proportion: float = 0.15  # time alteration: fraction of frames (before overlaps)
    mask_consecutive: int = 7  # frames per time span
    mask_frequency: float = 0.2  # widest frequency band, as a fraction of num_mel_bins
    noise_proba: float = 0.15  # probability (per batch) of adding Gaussian noise to the input
    noise_std: float = 0.2
    seed: int = 0  # of the alteration generators

    def __post_init__(self) -> None:
        for name in ("mask_proportion", "mask_frequency", "noise_proba"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], found {getattr(self, name)}")
        if self.mask_consecutive < 1 or self.num_layers < 1 or self.num_mel_bins < 1:
            raise ValueError(
                "mask_consecutive, num_layers and num_mel_bins must be >= 1, found "
                f"{self.mask_consecutive}, {self.num_layers}, {self.num_mel_bins}"
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )


# CPU-sized: pretrains on the synthetic corpus in a few minutes on one thread. Dropout off, as
# every tiny preset: a few hundred updates do not overfit.
TINY: dict[str, Any] = dict(
    hidden_size=128, num_heads=4, ffn_dim=512, dropout=0.0, attention_dropout=0.0
)
TIME_ONLY: dict[str, Any] = dict(mask_frequency=0.0, noise_proba=0.0)
TERA_PRESETS: dict[str, dict[str, Any]] = {"base": {}, "tiny": TINY}
MOCKINGJAY_PRESETS: dict[str, dict[str, Any]] = {
    "base": TIME_ONLY,
    "tiny": {**TINY, **TIME_ONLY},
}


def tera_config(preset: str = "base", **overrides: Any) -> TeraConfig:
    """A TERA preset (``"tiny"``, ``"base"``) with field overrides."""
    return get_method("tera").make_config(preset, **overrides)


def mockingjay_config(preset: str = "base", **overrides: Any) -> TeraConfig:
    """A Mockingjay (time alteration only) preset with field overrides."""
    return get_method("mockingjay").make_config(preset, **overrides)


# ---------------------------------------------------------------------------------------------
# alteration


@dataclass
class Alteration:
    """The altered input of a batch and what the loss covers; ``(B, T, F)`` unless said."""

    inputs: torch.Tensor  # altered features (the Transformer's input)
    time_mask: torch.Tensor  # (B, T) bool, frames of the time spans
    loss_mask: torch.Tensor  # bool, the bins L sums over (time spans | band), valid frames only
    span_starts: list[torch.Tensor]  # per utterance, (num_spans,) long
    time_action: torch.Tensor  # (B,) long: ZERO, RANDOM, UNCHANGED, or NO_SPANS
    bands: torch.Tensor  # (B, 2) long: first bin and width of the frequency band
    noise: bool  # Gaussian noise was added to the inputs


def _spans(starts: torch.Tensor, length: int) -> torch.Tensor:
    return (starts[:, None] + torch.arange(length)).reshape(-1)


@torch.no_grad()
def alter_spectrogram(
    feats: torch.Tensor,
    lengths: torch.Tensor,
    generator: torch.Generator,
    mask_proportion: float = 0.15,
    mask_consecutive: int = 7,
    mask_frequency: float = 0.2,
    noise_proba: float = 0.0,
    noise_std: float = 0.2,
) -> Alteration:
    """s3prl's ``generate_masked_acoustic_model_data`` with every draw from ``generator``.

    Args:
        feats: ``(B, T, F)`` clean features, padded frames zero.
        lengths: ``(B,)`` valid frames.
        generator: a CPU ``torch.Generator``; the same state gives the same alteration.
    """
    b_size, t_len, n_bins = feats.shape
    x = feats.clone()
    time_mask = torch.zeros(b_size, t_len, dtype=torch.bool)
    loss_mask = torch.zeros(b_size, t_len, n_bins, dtype=torch.bool)
    action = torch.full((b_size,), NO_SPANS, dtype=torch.long)
    bands = torch.zeros(b_size, 2, dtype=torch.long)
    span_starts = []
    width_max = int(n_bins * mask_frequency)
    span = mask_consecutive
    for b, n in enumerate(lengths.tolist()):
        starts = torch.zeros(0, dtype=torch.long)
        if mask_proportion > 0:
            last_start = max(n - span - 1, 0)
            count = round(n * mask_proportion / span)
            starts = torch.randperm(last_start + 1, generator=generator)[:count]
            starts = starts[starts + span <= n]  # only for n <= span, where count is 0 anyway
            dice = float(torch.rand((), generator=generator))
            if len(starts):
                frames = _spans(starts, span)
                time_mask[b, frames] = True
                if dice < 0.8:
                    action[b] = ZERO
                    x[b, frames.to(x.device)] = 0.0
                elif dice < 0.9:
                    action[b] = RANDOM
                    others = torch.randperm(last_start + 1, generator=generator)[: len(starts)]
                    source = torch.arange(t_len)
                    for s, o in zip(starts.tolist(), others.tolist(), strict=True):
                        source[s : s + span] = torch.arange(o, o + span)  # later spans win
                    x[b] = feats[b, source.to(x.device)]
                else:
                    action[b] = UNCHANGED
        span_starts.append(starts)
        if mask_frequency > 0:
            width = int(torch.randint(0, width_max + 1, (), generator=generator))
            first = int(torch.randint(0, max(n_bins - width, 1), (), generator=generator))
            bands[b] = torch.tensor([first, width])
            x[b, :, first : first + width] = 0.0
            loss_mask[b, :n, first : first + width] = True
    loss_mask |= time_mask[:, :, None]
    noise = noise_proba > 0 and float(torch.rand((), generator=generator)) < noise_proba
    if noise:
        x += (torch.randn(x.shape, generator=generator) * noise_std).to(x.device, x.dtype)
    dev = feats.device
    return Alteration(
        x, time_mask.to(dev), loss_mask.to(dev), span_starts, action, bands, bool(noise)
    )


# ---------------------------------------------------------------------------------------------
# backbone


def sinusoidal_positions(num_frames: int, dim: int, device: torch.device | None = None):
    """``(T, D)`` Transformer positions (Vaswani et al. 2017, §3.5): sin at even dims, cos at odd
    ones, of ``t / 10000^(2 floor(i / 2) / D)`` (s3prl ``get_sinusoid_table``)."""
    pos = torch.arange(num_frames, dtype=torch.float64, device=device)[:, None]
    i = torch.arange(dim, device=device)
    angle = pos / torch.pow(10000.0, (2 * (i // 2)).double() / dim)
    return torch.where(i % 2 == 0, torch.sin(angle), torch.cos(angle)).float()


@dataclass
class TeraOutput:
    hidden_states: list[torch.Tensor]  # (B, T, D) each: input embedding, then each layer
    lengths: torch.Tensor  # (B,) valid frames; padded frames of every hidden state are zero
    features: torch.Tensor  # (B, T, num_mel_bins) the clean fbank, zero-padded


class TeraModel(nn.Module):
    """Waveform -> utterance-normalised fbank -> Linear + sinusoidal positions -> LayerNorm ->
    post-LN Transformer (the backbone an exported upstream holds)."""

    def __init__(self, cfg: TeraConfig):
        super().__init__()
        self.cfg = cfg
        self.feature_config = FeatureConfig(kind="fbank", num_mel_bins=cfg.num_mel_bins)
        self.input_projection = nn.Linear(cfg.num_mel_bins, cfg.hidden_size)
        self.input_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(
            TransformerLayer(
                cfg.hidden_size,
                cfg.ffn_dim,
                cfg.num_heads,
                cfg.dropout,
                cfg.attention_dropout,
                activation_dropout=0.0,
                layer_norm_first=False,
                eps=cfg.layer_norm_eps,
            )
            for _ in range(cfg.num_layers)
        )
        self.apply(bert_init)  # every Linear N(0, 0.02), as s3prl's init_Transformer_weights

    @property
    def stride(self) -> int:
        return self.feature_config.frame_shift_samples

    @property
    def num_layers(self) -> int:
        return self.cfg.num_layers

    @property
    def hidden_size(self) -> int:
        return self.cfg.hidden_size

    @torch.no_grad()
    def features(
        self, wavs: torch.Tensor, wav_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, S)`` samples -> ``(B, T, num_mel_bins)`` fbank with per-utterance mean/variance
        normalisation (zero-padded) and ``(B,)`` frames; on the CPU one utterance at a time, as
        ``FbankUpstream`` does."""
        return batch_features(wavs, wav_lengths, self.feature_config)

    def encode(self, feats: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """``(B, T, num_mel_bins)`` features -> ``num_layers + 1`` hidden states ``(B, T, D)``;
        padded frames are never attended to, and are zero in every hidden state."""
        valid = length_mask(lengths, feats.shape[1])
        keep = valid.unsqueeze(-1).to(feats.dtype)
        pos = sinusoidal_positions(feats.shape[1], self.cfg.hidden_size, feats.device)
        x = self.input_layer_norm(self.input_projection(feats * keep) + pos)
        # an empty utterance attends to its padding rather than to nothing (NaN)
        attn_mask = (valid | (lengths == 0)[:, None])[:, None, None, :]
        hidden = [x * keep.to(x.dtype)]
        x = self.dropout(x)
        for layer in self.layers:
            x, _ = layer(x, attn_mask)
            hidden.append(x * keep.to(x.dtype))
        return hidden

    def forward(self, wavs: torch.Tensor, wav_lengths: torch.Tensor | None = None) -> TeraOutput:
        """wavs: ``(B, S)`` zero-padded; wav_lengths: ``(B,)`` samples (None: all of ``S``)."""
        if wav_lengths is None:
            wav_lengths = torch.full((wavs.shape[0],), wavs.shape[1], device=wavs.device)
        feats, lengths = self.features(wavs, wav_lengths)
        return TeraOutput(self.encode(feats, lengths), lengths, feats)


class SpecPredictionHead(nn.Module):
    """Linear -> GELU -> LayerNorm -> Linear to the mel bins (s3prl
    ``TransformerSpecPredictionHead``); ``(B, T, D) -> (B, T, num_mel_bins)``."""

    def __init__(self, cfg: TeraConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.activation = nn.GELU()
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.output = nn.Linear(cfg.hidden_size, cfg.num_mel_bins)
        self.apply(bert_init)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.output(self.layer_norm(self.activation(self.dense(hidden))))


# ---------------------------------------------------------------------------------------------
# pretraining


class TeraPretraining(StepGenerators, nn.Module):
    """Altered-frame reconstruction: ``forward(batch) -> ModelOutput``; ``batch`` has ``wavs``
    ``(B, S)`` and ``lengths`` ``(B,)``."""

    method = "tera"

    def __init__(self, cfg: TeraConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = TeraModel(cfg)
        self.head = SpecPredictionHead(cfg)

    def alter(self, feats: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator):
        cfg = self.cfg
        return alter_spectrogram(
            feats,
            lengths,
            generator,
            cfg.mask_proportion,
            cfg.mask_consecutive,
            cfg.mask_frequency,
            cfg.noise_proba,
            cfg.noise_std,
        )

    def forward(self, batch: Any, generator: torch.Generator | None = None) -> ModelOutput:
        feats, lengths = self.backbone.features(batch.wavs, batch.lengths)
        alt = self.alter(
            feats, lengths, generator if generator is not None else self._generator(batch)
        )
        hidden = self.backbone.encode(alt.inputs, lengths)
        pred = self.head(hidden[-1]).float()
        mask = alt.loss_mask
        loss = (pred - feats)[mask].abs().sum()
        valid = max(int(lengths.sum()), 1)
        stats = {
            # predicting 0 (each bin's utterance mean): the loss of a model that learned nothing
            "zero_loss": feats[mask].abs().sum() / max(int(mask.sum()), 1),
            "mask_fraction": alt.time_mask.sum().float() / valid,
            "band_width": alt.bands[:, 1].float().mean(),
            "noise": torch.tensor(float(alt.noise)),
        }
        return ModelOutput(loss=loss, sample_size=int(mask.sum()), stats=stats)

    def export_upstream(self) -> dict[str, Any]:
        """What an exported upstream file holds (see ``speechssl.upstream``)."""
        return export_backbone(self.method, self.cfg, self.backbone)


class MockingjayPretraining(TeraPretraining):
    """TERA's model under Mockingjay's name (its presets alter time only)."""

    method = "mockingjay"


register_method(SSLMethod("tera", TeraConfig, TeraPretraining, TeraModel, TERA_PRESETS))
register_method(
    SSLMethod("mockingjay", TeraConfig, MockingjayPretraining, TeraModel, MOCKINGJAY_PRESETS)
)
