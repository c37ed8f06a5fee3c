"""wav2vec 2.0 (Baevski et al. 2020): backbone and contrastive pretraining.

:class:`Wav2Vec2Model` is the backbone (conv feature encoder, feature projection, transformer)
shared by pretraining, ASR fine-tuning and the upstream interface; HuBERT and data2vec reuse it
with other settings. :class:`Wav2Vec2Pretraining` adds the Gumbel quantizer, the projections
and the loss (§3.2-3.3, fairseq ``wav2vec2.py`` semantics):

    L = L_contrastive + 0.1 · S · (GV − prob_ppl) / GV + 10 · S · mean(conv_features²)

summed over the S masked frames (``ModelOutput.sample_size = S``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from speechssl.config import from_dict
from speechssl.kernels.contrastive import (
    contrastive_loss,
    sample_cross_negatives,
    sample_negatives,
)
from speechssl.nn.conv_encoder import (
    WAV2VEC2_CONV_LAYERS,
    ConvFeatureEncoder,
    FeatureProjection,
    layer_norm_waveform,
)
from speechssl.nn.fbank_frontend import FbankFrontend
from speechssl.nn.quantizer import GumbelVectorQuantizer
from speechssl.nn.transformer import TransformerEncoder, TransformerOutput, bert_init
from speechssl.ssl import SSLMethod, get_method, register_method
from speechssl.ssl.convert import wav2vec2_from_fairseq, wav2vec2_from_hf
from speechssl.ssl.masked import LARGE_BACKBONE, TINY_BACKBONE, MaskedPretraining
from speechssl.ssl.masking import masked_frame_index
from speechssl.train.protocol import ModelOutput


@dataclass
class Wav2Vec2Config:
    """wav2vec 2.0 settings; defaults are BASE (fairseq ``wav2vec2_base_librispeech``)."""

    # feature encoder: "cnn" (the 7-layer waveform CNN) or "fbank" (80-d log-Mel frames at
    # 10 ms, ``fbank_stack`` of them concatenated: 20 ms frames, no parameters; MelHuBERT)
    frontend: str = "cnn"
    fbank_stack: int = 2
    num_mel_bins: int = 80
    conv_layers: list[tuple[int, int, int]] = field(
        default_factory=lambda: list(WAV2VEC2_CONV_LAYERS)
    )  # (channels, kernel, stride) per conv block
    extractor_mode: str = "group"  # "group": GroupNorm on block 0; "layer": LN in every block
    conv_bias: bool = False
    normalize_waveform: bool = False  # zero-mean unit-variance waveform (LARGE, data2vec)
    feature_grad_mult: float = 0.1  # scales the conv encoder's gradient (0: frozen)
    # transformer
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ffn_dim: int = 3072
    layer_norm_first: bool = False  # pre-LN layers (LARGE)
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    pos_conv_style: str = "weight_norm"  # or "layer_norm_stack" (data2vec)
    pos_conv_depth: int = 1
    feature_projection_layer_norm: bool = True
    layer_norm_eps: float = 1e-5
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    input_dropout: float = 0.1  # on the projected features (transformer input)
    feature_dropout: float = 0.1  # on the features the quantizer sees
    layerdrop: float = 0.05
    # masking
    mask_prob: float = 0.65
    mask_length: int = 10
    min_masks: int = 2
    require_same_masks: bool = True
    mask_dropout: float = 0.0
    # channel masking (fairseq mask_channel_*): spans of the transformer input's channels zeroed
    # over a whole utterance, after the time mask; off in pretraining configs, used in fine-tuning
    mask_channel_prob: float = 0.0
    mask_channel_length: int = 10
    # quantizer
    codebook_groups: int = 2
    codebook_entries: int = 320
    codevector_dim: int = 0  # width of the concatenated codevector; 0 -> final_dim
    codebook_combine_groups: bool = False  # one entry table shared by the codebooks
    gumbel_temperature: tuple[float, float, float] = (2.0, 0.5, 0.999995)  # start, end, decay
    final_dim: int = 256  # shared space of predictions and targets
    # contrastive loss
    num_negatives: int = 100  # from the same utterance's masked frames
    cross_sample_negatives: int = 0  # from any utterance of the batch
    codebook_negatives: int = 0  # random codewords (one uniform entry per codebook), projected
    logit_temperature: float = 0.1
    diversity_weight: float = 0.1
    feature_penalty_weight: float = 10.0
    seed: int = 0  # masks and negatives: derived from (seed, num_updates, micro-batch, rank)

    def __post_init__(self) -> None:
        if self.frontend not in ("cnn", "fbank"):
            raise ValueError(f"frontend must be 'cnn' or 'fbank', not {self.frontend!r}")
        self.conv_layers = [tuple(int(v) for v in spec) for spec in self.conv_layers]
        self.gumbel_temperature = tuple(float(v) for v in self.gumbel_temperature)


PRESETS: dict[str, dict[str, Any]] = {
    "base": {},
    # fairseq wav2vec2_large_librivox
    "large": dict(
        LARGE_BACKBONE, gumbel_temperature=(2.0, 0.1, 0.999995), feature_penalty_weight=0.0
    ),
    # CPU-sized: on the synthetic corpus, with lr 2e-3, the contrastive loss leaves chance
    # (log 31) after ~250 updates and accuracy reaches ~0.3-0.5 by ~600.
    "tiny": dict(
        TINY_BACKBONE,
        codebook_groups=2,
        codebook_entries=64,
        final_dim=64,
        gumbel_temperature=(2.0, 0.5, 0.995),
        num_negatives=30,
        mask_prob=0.5,
    ),
}


def wav2vec2_config(preset: str = "base", **overrides: Any) -> Wav2Vec2Config:
    """A preset (``"tiny"``, ``"base"``, ``"large"``) with field overrides."""
    return get_method("wav2vec2").make_config(preset, **overrides)


def config_from_dict(values: dict[str, Any]) -> Wav2Vec2Config:
    return from_dict(Wav2Vec2Config, values, "wav2vec2 config")


@dataclass
class Wav2Vec2Output:
    hidden_states: list[torch.Tensor]  # (B, T, D) each; see TransformerOutput
    lengths: torch.Tensor  # (B,) valid frames
    ffn_outputs: list[torch.Tensor | None] | None = None

    @property
    def last_hidden_state(self) -> torch.Tensor:
        return self.hidden_states[-1]


class Wav2Vec2Model(nn.Module):
    """Waveform -> transformer hidden states.

    Reads only the backbone fields of ``cfg`` (feature encoder, transformer), so a subclass of
    :class:`Wav2Vec2Config` (HuBERT, data2vec) can build it too.
    """

    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.cfg = cfg
        self.feature_extractor: ConvFeatureEncoder | FbankFrontend
        if cfg.frontend == "fbank":
            self.feature_extractor = FbankFrontend(cfg.num_mel_bins, cfg.fbank_stack)
        else:
            self.feature_extractor = ConvFeatureEncoder(
                cfg.conv_layers, cfg.extractor_mode, cfg.conv_bias
            )
        self.feature_projection = FeatureProjection(
            self.feature_extractor.output_dim,
            cfg.hidden_size,
            cfg.input_dropout,
            cfg.feature_projection_layer_norm,
            cfg.layer_norm_eps,
        )
        self.mask_emb = nn.Parameter(torch.rand(cfg.hidden_size))
        self.encoder = TransformerEncoder(
            dim=cfg.hidden_size,
            num_layers=cfg.num_layers,
            num_heads=cfg.num_heads,
            ffn_dim=cfg.ffn_dim,
            dropout=cfg.dropout,
            attention_dropout=cfg.attention_dropout,
            activation_dropout=cfg.activation_dropout,
            layerdrop=cfg.layerdrop,
            layer_norm_first=cfg.layer_norm_first,
            pos_conv_kernel=cfg.pos_conv_kernel,
            pos_conv_groups=cfg.pos_conv_groups,
            pos_conv_style=cfg.pos_conv_style,
            pos_conv_depth=cfg.pos_conv_depth,
            eps=cfg.layer_norm_eps,
        )
        self.encoder.layers.apply(bert_init)

    @property
    def stride(self) -> int:
        return self.feature_extractor.stride

    @property
    def num_layers(self) -> int:
        return self.cfg.num_layers

    @property
    def hidden_size(self) -> int:
        return self.cfg.hidden_size

    def output_lengths(self, wav_lengths: torch.Tensor) -> torch.Tensor:
        return self.feature_extractor.output_lengths(wav_lengths)

    def extract_features(
        self, wavs: torch.Tensor, wav_lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, S)`` samples -> ``(B, T, C)`` conv (or stacked fbank) features, before the
        LayerNorm, and ``(B,)`` frames."""
        if wav_lengths is None:
            wav_lengths = torch.full((wavs.shape[0],), wavs.shape[1], device=wavs.device)
        if self.cfg.normalize_waveform:
            wavs = layer_norm_waveform(wavs, wav_lengths)
        return self.feature_extractor(wavs, wav_lengths)

    def encode(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor,
        mask: torch.Tensor | None = None,
        return_ffn_outputs: bool = False,
        num_layers: int | None = None,
        channel_mask: torch.Tensor | None = None,
    ) -> TransformerOutput:
        """Projected features ``(B, T, D)`` -> transformer outputs; frames where ``mask``
        ``(B, T)`` is True are replaced by the learned mask embedding first, then channels where
        ``channel_mask`` ``(B, D)`` is True are zeroed in every frame (fairseq's order)."""
        if mask is not None:
            x = torch.where(mask.unsqueeze(-1), self.mask_emb.to(x.dtype), x)
        if channel_mask is not None:
            x = x.masked_fill(channel_mask.unsqueeze(1), 0.0)
        return self.encoder(x, lengths, return_ffn_outputs, num_layers)

    def forward(
        self,
        wavs: torch.Tensor,
        wav_lengths: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        return_ffn_outputs: bool = False,
        num_layers: int | None = None,
    ) -> Wav2Vec2Output:
        """wavs: ``(B, S)`` zero-padded; wav_lengths: ``(B,)``; mask: ``(B, T)`` frames to
        replace by the mask embedding (fine-tuning's time masking)."""
        feats, lengths = self.extract_features(wavs, wav_lengths)
        x, _ = self.feature_projection(feats)
        out = self.encode(x, lengths, mask, return_ffn_outputs, num_layers)
        return Wav2Vec2Output(out.hidden_states, lengths, out.ffn_outputs)


def _rows_to_batch(
    y: torch.Tensor, codes: torch.Tensor, valid: torch.Tensor, all_valid: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked-frame rows ``(N, D)``/``(N, G)`` (in ``x[mask]`` order) -> ``(B, T_m, ...)``;
    rows past a row's count are zeros / code -1."""
    b, t_m = valid.shape
    if all_valid:
        return y.view(b, t_m, -1), codes.view(b, t_m, -1)
    target = y.new_zeros(b, t_m, y.shape[1]).index_put((valid,), y)
    return target, codes.new_full((b, t_m, codes.shape[1]), -1).index_put((valid,), codes)


class Wav2Vec2Pretraining(MaskedPretraining):
    """Masked contrastive pretraining: ``forward(batch) -> ModelOutput``.

    ``batch`` has ``wavs`` ``(B, S)``, ``lengths`` ``(B,)`` and ``utt_ids``. Masks, Gumbel
    noise and negatives are drawn from a generator seeded by ``(cfg.seed, num_updates, the
    batch's utterances)`` (:class:`~speechssl.ssl.masking.StepGenerators`), so a resumed run
    and a DDP run draw the same ones as an uninterrupted single process; dropout uses torch's
    global RNG.
    """

    method = "wav2vec2"
    backbone_cls = Wav2Vec2Model

    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__(cfg)
        conv_dim = self.backbone.feature_extractor.output_dim
        vq_dim = cfg.codevector_dim or cfg.final_dim
        self.feature_dropout = nn.Dropout(cfg.feature_dropout)
        self.quantizer = GumbelVectorQuantizer(
            conv_dim,
            cfg.codebook_groups,
            cfg.codebook_entries,
            vq_dim,
            cfg.gumbel_temperature,
            cfg.codebook_combine_groups,
        )
        self.project_q = nn.Linear(vq_dim, cfg.final_dim)
        self.final_proj = nn.Linear(cfg.hidden_size, cfg.final_dim)

    def set_num_updates(self, num_updates: int) -> None:
        super().set_num_updates(num_updates)
        self.quantizer.set_num_updates(num_updates)

    def compute_mask(
        self, lengths: torch.Tensor, num_frames: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``(B, T)`` bool span mask; the contrastive loss needs >= 2 masked frames a row."""
        mask = super().compute_mask(lengths, num_frames, generator)
        if int(mask.sum(1).max()) < 2:
            raise ValueError(
                f"wav2vec2 pretraining: at most {int(mask.sum(1).max())} masked frame(s) per "
                f"utterance (frames per utterance: {lengths.tolist()}); utterances are too "
                "short for the contrastive loss - crop/filter to longer ones"
            )
        return mask

    def codebook_negatives(
        self, codes: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T_m, K, final_dim)`` random projected codewords per masked frame (fairseq
        ``codebook_negatives``) and ``(B, T_m, K)`` whether one is the positive's codeword."""
        b, t_m, groups = codes.shape
        k = self.cfg.codebook_negatives
        words, idx = self.quantizer.sample_from_codebook(b * t_m * k, generator)
        negs = self.project_q(words).view(b, t_m, k, -1)
        same = (idx.view(b, t_m, k, groups) == codes.unsqueeze(2)).all(-1)
        return negs, same

    def forward(self, batch: Any, generator: torch.Generator | None = None):
        """batch: ``wavs`` ``(B, S)``, ``lengths`` ``(B,)``. Returns ``ModelOutput`` with the
        loss summed over the S masked frames and ``sample_size`` = S."""
        cfg = self.cfg
        gen = generator if generator is not None else self._generator(batch)
        enc = self.encode_masked(batch, gen)
        mask, hidden, feats = enc.mask, enc.hidden, enc.feats

        # predictions and targets of the masked frames, (B, T_m, final_dim)
        index, valid = masked_frame_index(mask)
        pred = self.final_proj(
            hidden.gather(1, index.unsqueeze(-1).expand(-1, -1, hidden.shape[2]))
        )
        # targets: the quantized unmasked features of the masked frames
        q = self.quantizer(self.feature_dropout(enc.normed)[mask], gen)
        all_valid = bool(valid.all())
        target, codes = _rows_to_batch(self.project_q(q.quantized), q.codes, valid, all_valid)

        counts = valid.sum(1)
        # a row with one masked frame has no in-utterance negative (every draw would be the
        # positive itself, a zero loss counted as correct): it is left out of the loss
        if bool((counts == 1).any()):
            valid = valid & (counts >= 2)[:, None]
            counts, all_valid = counts * (counts >= 2), False
        neg_idx = sample_negatives(counts, index.shape[1], cfg.num_negatives, gen)
        cross = None
        if cfg.cross_sample_negatives > 0:
            cross = sample_cross_negatives(counts, index.shape[1], cfg.cross_sample_negatives, gen)
            cross = cross.to(feats.device)
        extra = extra_dup = None
        if cfg.codebook_negatives > 0:
            extra, extra_dup = self.codebook_negatives(codes, gen)
        out = contrastive_loss(
            pred,
            target,
            neg_idx.to(feats.device),
            cfg.logit_temperature,
            valid=None if all_valid else valid,
            cross_neg_idx=cross,
            dup_key=codes,
            extra_negatives=extra,
            extra_dup=extra_dup,
        )
        sample_size = out.num_rows
        num_vars = self.quantizer.num_codevectors
        diversity = (num_vars - q.prob_perplexity) / num_vars
        loss = (
            out.loss
            + cfg.diversity_weight * diversity * sample_size
            + cfg.feature_penalty_weight * enc.features_pen * sample_size
        )
        stats = {
            "contrastive": out.loss.detach() / sample_size,
            "diversity": diversity.detach(),
            "features_pen": enc.features_pen.detach(),
            "accuracy": out.num_correct.float() / sample_size,
            "code_perplexity": q.code_perplexity.detach(),
            "prob_perplexity": q.prob_perplexity.detach(),
            "temperature": q.temperature,
            "codes_used": q.entries_used.float(),
            "code_usage": q.entries_used.float() / num_vars,
            "mask_fraction": mask.sum().float() / enc.valid.sum(),
        }
        return ModelOutput(loss=loss, sample_size=sample_size, stats=stats)


register_method(
    SSLMethod(
        "wav2vec2",
        Wav2Vec2Config,
        Wav2Vec2Pretraining,
        Wav2Vec2Model,
        PRESETS,
        hf_model_types=("wav2vec2",),
        from_hf=wav2vec2_from_hf,
        fairseq_models=("wav2vec2",),
        from_fairseq=wav2vec2_from_fairseq,
    )
)
