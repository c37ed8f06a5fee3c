"""Transformer encoder of wav2vec 2.0 / HuBERT / data2vec, on ``scaled_dot_product_attention``.

Relative position comes from a convolution over time added to the input (Baevski et al. 2020,
§2; Mohamed et al. 2017), in one of two parametrizations:

- ``"weight_norm"`` (wav2vec 2.0, HuBERT): one grouped Conv1d, weight-normalised over
  ``dim=2`` (one gain per kernel tap), "same" padding that drops the last frame for even kernels,
  GELU.
- ``"layer_norm_stack"`` (data2vec): ``depth`` grouped Conv1d -> LayerNorm (no affine) -> GELU
  blocks, no weight norm. Padded frames are re-zeroed between blocks so a padded utterance gives
  the same valid frames as alone.

Layers are post-LN (``x = LN(x + f(x))``, BASE) or pre-LN (``layer_norm_first``, LARGE), with
LayerDrop while training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from speechssl.nn.conv_encoder import length_mask


class WeightNormConv1d(nn.Module):
    """Conv1d with weight ``w = g * v / ||v||``, the norm over every dim except ``dim`` (=2 as in
    wav2vec 2.0: one gain per kernel tap). Parameters ``weight_g`` ``(1, 1, k)``, ``weight_v``
    ``(C_out, C_in / groups, k)``, ``bias``: the classic ``torch.nn.utils.weight_norm`` layout."""

    def __init__(self, dim: int, kernel_size: int, groups: int, norm_dim: int = 2):
        super().__init__()
        if dim % groups:
            raise ValueError(f"positional conv: width {dim} is not divisible by {groups} groups")
        self.kernel_size, self.groups, self.norm_dim = kernel_size, groups, norm_dim
        # fairseq init: N(0, sqrt(4 / (k * dim))) for v, bias 0, g = ||v||
        v = torch.randn(dim, dim // groups, kernel_size) * (4.0 / (kernel_size * dim)) ** 0.5
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(self._norm(v).detach().clone())
        self.bias = nn.Parameter(torch.zeros(dim))

    def _norm(self, v: torch.Tensor) -> torch.Tensor:
        dims = [d for d in range(v.dim()) if d != self.norm_dim]
        return v.norm(dim=dims, keepdim=True)

    @property
    def weight(self) -> torch.Tensor:
        return self.weight_v * (self.weight_g / self._norm(self.weight_v))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(
            x, self.weight, self.bias, padding=self.kernel_size // 2, groups=self.groups
        )


class _StackedConvBlock(nn.Module):
    def __init__(self, dim: int, kernel_size: int, groups: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=groups)
        self.layer_norm = nn.LayerNorm(dim, elementwise_affine=False)


class ConvPositionalEmbedding(nn.Module):
    """Convolutional relative positional embedding: ``(B, T, D) -> (B, T, D)`` (to be added to
    the input). ``style`` is ``"weight_norm"`` (one conv, ``depth`` must be 1) or
    ``"layer_norm_stack"`` (data2vec: ``depth`` conv + LN + GELU blocks)."""

    def __init__(
        self,
        dim: int,
        kernel_size: int = 128,
        groups: int = 16,
        style: str = "weight_norm",
        depth: int = 1,
    ):
        super().__init__()
        self.style, self.kernel_size = style, kernel_size
        # "same" length: padding k//2 each side gives T + 1 frames for even k; drop the last
        self.trim = 1 if kernel_size % 2 == 0 else 0
        if style == "weight_norm":
            if depth != 1:
                raise ValueError("the weight-norm positional conv has depth 1")
            self.conv = WeightNormConv1d(dim, kernel_size, groups)
        elif style == "layer_norm_stack":
            self.layers = nn.ModuleList(
                _StackedConvBlock(dim, kernel_size, groups) for _ in range(depth)
            )
        else:
            raise ValueError(
                f"positional conv style must be 'weight_norm' or 'layer_norm_stack', not {style!r}"
            )

    def _same(self, y: torch.Tensor) -> torch.Tensor:
        return y[:, :, : y.shape[2] - self.trim] if self.trim else y

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """x: ``(B, T, D)`` with padded frames zeroed; valid: ``(B, T)`` bool or None."""
        y = x.transpose(1, 2)
        if self.style == "weight_norm":
            return F.gelu(self._same(self.conv(y))).transpose(1, 2)
        keep = valid.unsqueeze(1).to(y.dtype) if valid is not None else None
        for i, block in enumerate(self.layers):
            y = self._same(block.conv(y))
            y = F.gelu(block.layer_norm(y.transpose(1, 2)).transpose(1, 2))
            if keep is not None and i + 1 < len(self.layers):
                y = y * keep
        return y.transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v/out projections (the fairseq/HF layout)."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.dropout = num_heads, dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        """x: ``(B, T, D)``; attn_mask: ``(B, 1, 1, T)`` bool, True = key may be attended."""
        b, t, d = x.shape
        h = self.num_heads

        def heads(proj: nn.Linear) -> torch.Tensor:
            return proj(x).view(b, t, h, d // h).transpose(1, 2)

        y = F.scaled_dot_product_attention(
            heads(self.q_proj),
            heads(self.k_proj),
            heads(self.v_proj),
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))


class TransformerLayer(nn.Module):
    """One encoder layer. Returns ``(x, ffn_out)``: ``ffn_out`` is the fc2 output before
    dropout, residual and LayerNorm (data2vec's target, paper fn. 5)."""

    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        num_heads: int,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        activation_dropout: float = 0.0,
        layer_norm_first: bool = False,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.layer_norm_first = layer_norm_first
        self.attention = SelfAttention(dim, num_heads, attention_dropout)
        self.attention_layer_norm = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.activation_dropout = nn.Dropout(activation_dropout)

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_dropout(F.gelu(self.fc1(x))))

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.layer_norm_first:
            x = x + self.dropout(self.attention(self.attention_layer_norm(x), attn_mask))
            ffn_out = self._ffn(self.final_layer_norm(x))
            return x + self.dropout(ffn_out), ffn_out
        x = self.attention_layer_norm(x + self.dropout(self.attention(x, attn_mask)))
        ffn_out = self._ffn(x)
        return self.final_layer_norm(x + self.dropout(ffn_out)), ffn_out


@dataclass
class TransformerOutput:
    """``hidden_states[0]`` is the layer-stack input (after the positional conv, and its
    LayerNorm for post-LN), ``hidden_states[i]`` the output of layer ``i``; for pre-LN the last
    one includes the final LayerNorm (as HF's ``output_hidden_states``). ``ffn_outputs[i]`` is
    layer ``i + 1``'s fc2 output (None for a layer LayerDrop skipped), when requested."""

    hidden_states: list[torch.Tensor]
    ffn_outputs: list[torch.Tensor | None] | None = None

    @property
    def last_hidden_state(self) -> torch.Tensor:
        return self.hidden_states[-1]


class TransformerEncoder(nn.Module):
    """Positional conv + a stack of :class:`TransformerLayer`: ``(x, lengths) -> outputs``."""

    def __init__(
        self,
        dim: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        ffn_dim: int = 3072,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        activation_dropout: float = 0.0,
        layerdrop: float = 0.0,
        layer_norm_first: bool = False,
        pos_conv_kernel: int = 128,
        pos_conv_groups: int = 16,
        pos_conv_style: str = "weight_norm",
        pos_conv_depth: int = 1,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.layer_norm_first, self.layerdrop = layer_norm_first, layerdrop
        self.pos_conv = ConvPositionalEmbedding(
            dim, pos_conv_kernel, pos_conv_groups, pos_conv_style, pos_conv_depth
        )
        self.layer_norm = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerLayer(
                dim,
                ffn_dim,
                num_heads,
                dropout,
                attention_dropout,
                activation_dropout,
                layer_norm_first,
                eps,
            )
            for _ in range(num_layers)
        )

    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor | None = None,
        return_ffn_outputs: bool = False,
        num_layers: int | None = None,
    ) -> TransformerOutput:
        """x: ``(B, T, D)``; lengths: ``(B,)`` valid frames (None: no padding).

        ``num_layers`` stops after that many layers (e.g. HuBERT k-means features); the final
        LayerNorm of a pre-LN stack is then not applied, as in fairseq.
        """
        stop = len(self.layers) if num_layers is None else num_layers
        if not 0 <= stop <= len(self.layers):
            raise ValueError(f"num_layers={num_layers} but the encoder has {len(self.layers)}")
        valid = attn_mask = None
        if lengths is not None and int(lengths.min()) < x.shape[1]:
            valid = length_mask(lengths, x.shape[1])
            x = x * valid.unsqueeze(-1).to(x.dtype)
            attn_mask = valid[:, None, None, :]
        x = x + self.pos_conv(x, valid)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        hidden_states = [x]
        ffn_outputs: list[torch.Tensor | None] = []
        x = self.dropout(x)
        for layer in self.layers[:stop]:
            if self.training and self.layerdrop > 0 and float(torch.rand(())) < self.layerdrop:
                ffn_outputs.append(None)
            else:
                x, ffn_out = layer(x, attn_mask)
                ffn_outputs.append(ffn_out if return_ffn_outputs else None)
            hidden_states.append(x)
        if self.layer_norm_first and stop == len(self.layers):
            hidden_states[-1] = self.layer_norm(x)
        return TransformerOutput(hidden_states, ffn_outputs if return_ffn_outputs else None)


def bert_init(module: nn.Module) -> None:
    """BERT init (fairseq ``init_bert_params``) for the transformer layers: N(0, 0.02), bias 0."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
