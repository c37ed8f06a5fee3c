"""A fused Triton kernel for :func:`speechssl.kernels.contrastive.contrastive_loss`: gather,
dot product, online log-sum-exp and cross-entropy in one pass per row, forward and backward,
without the ``(B, T, K+1, D)`` candidates tensor.

What stays in PyTorch (autograd): normalising x and y (cosine similarity; skipped for CPC's dot
product), the candidate index table ``(N, C)`` (column 0 the positive ``b*T + t``, then the
in-utterance negatives ``b*T + neg_idx``, then the cross-sample ones; N = B*T rows, C = 1+K+Kc,
int32) and the duplicate mask (a negative equal to its positive, found by key or by row hash as
the torch path does). What the kernels do, one program per row:

- forward: load the row's x̂ (D values), then blocks of candidates: gather their ŷ rows, dot
  products / temperature, duplicates to -inf, an online max / sum of exponentials; write the
  row's log-sum-exp, its positive logit, and the largest and smallest negative logit (for the
  accuracy count). Nothing of size C leaves the chip.
- backward: recompute each block's logits, ``p = exp(l - lse)``, the coefficient
  ``a_j = g (p_j - [j = 0]) / τ``; ``∂x̂ = Σ_j a_j ŷ_j`` is written once per row, and
  ``∂ŷ_{idx_j} += a_j x̂`` is scattered with atomic adds (a row of y serves as a positive once
  and as a negative wherever it was drawn).

Registered as backend ``"triton"`` for CUDA tensors; ``backend="auto"`` prefers it there. On a
CPU it runs under Triton's interpreter (``TRITON_INTERPRET=1`` before this module is imported),
which is how the tests check it here. Explicit extra negatives (wav2vec 2.0's
``codebook_negatives``) are not fused: with them the call goes to the torch path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from speechssl.kernels.contrastive import (
    NORM_EPS,
    ContrastiveOutput,
    _contrastive_gram,
    _duplicates,
    _math_dtype,
    register_backend,
)


@triton.jit
def _forward_kernel(
    x_ptr, y_ptr, cand_ptr, dup_ptr, lse_ptr, pos_ptr, maxneg_ptr, minneg_ptr,
    C, D, inv_temp,
    BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)
    d = tl.arange(0, BLOCK_D)
    x = tl.load(x_ptr + row * D + d, mask=d < D, other=0.0)
    m = -float("inf")
    s = 0.0
    pos = 0.0
    max_neg = -float("inf")
    min_neg = float("inf")
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        in_row = c < C
        idx = tl.load(cand_ptr + row * C + c, mask=in_row, other=0)
        dup = tl.load(dup_ptr + row * C + c, mask=in_row, other=0)
        y = tl.load(
            y_ptr + idx[:, None].to(tl.int64) * D + d[None, :],
            mask=in_row[:, None] & (d[None, :] < D),
            other=0.0,
        )
        logit = tl.sum(y * x[None, :], axis=1) * inv_temp
        logit = tl.where(dup != 0, -float("inf"), logit)
        live = in_row & (dup == 0)
        block_max = tl.max(tl.where(live, logit, -float("inf")), axis=0)
        new_m = tl.maximum(m, block_max)
        s = s * tl.exp(m - new_m) + tl.sum(tl.where(live, tl.exp(logit - new_m), 0.0), axis=0)
        m = new_m
        is_pos = c == 0
        pos += tl.sum(tl.where(is_pos, logit, 0.0), axis=0)
        neg = in_row & (c > 0)
        max_neg = tl.maximum(max_neg, tl.max(tl.where(neg, logit, -float("inf")), axis=0))
        min_neg = tl.minimum(min_neg, tl.min(tl.where(neg, logit, float("inf")), axis=0))
    tl.store(lse_ptr + row, m + tl.log(s))
    tl.store(pos_ptr + row, pos)
    tl.store(maxneg_ptr + row, max_neg)
    tl.store(minneg_ptr + row, min_neg)


@triton.jit
def _backward_kernel(
    x_ptr, y_ptr, cand_ptr, dup_ptr, lse_ptr, grad_ptr, gx_ptr, gy_ptr,
    C, D, inv_temp,
    BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)
    d = tl.arange(0, BLOCK_D)
    in_d = d < D
    x = tl.load(x_ptr + row * D + d, mask=in_d, other=0.0)
    lse = tl.load(lse_ptr + row)
    g = tl.load(grad_ptr + row)
    gx = tl.zeros([BLOCK_D], dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        in_row = c < C
        idx = tl.load(cand_ptr + row * C + c, mask=in_row, other=0)
        dup = tl.load(dup_ptr + row * C + c, mask=in_row, other=0)
        live = in_row & (dup == 0)
        offsets = idx[:, None].to(tl.int64) * D + d[None, :]
        y = tl.load(y_ptr + offsets, mask=live[:, None] & in_d[None, :], other=0.0)
        logit = tl.sum(y * x[None, :], axis=1) * inv_temp
        p = tl.where(live, tl.exp(logit - lse), 0.0)
        a = g * (p - tl.where(c == 0, 1.0, 0.0)) * inv_temp
        a = tl.where(in_row, a, 0.0)
        gx += tl.sum(a[:, None] * y, axis=0)
        tl.atomic_add(
            gy_ptr + offsets, a[:, None] * x[None, :], mask=in_row[:, None] & in_d[None, :]
        )
    tl.store(gx_ptr + row * D + d, gx, mask=in_d)


def _blocks(c: int, d: int) -> tuple[int, int]:
    block_d = triton.next_power_of_2(max(d, 16))
    block_c = max(16, min(64, triton.next_power_of_2(c), 8192 // block_d))
    return block_c, block_d


class _FusedRows(torch.autograd.Function):
    """``(x̂ (N, D), ŷ (N, D), cand (N, C) int32, dup (N, C) int8)`` -> per-row
    ``(lse - positive logit)`` (N,), plus the accuracy ingredients (no gradient)."""

    @staticmethod
    def forward(ctx, xh, yh, cand, dup, inv_temp):
        n, d = xh.shape
        c = cand.shape[1]
        lse, pos, max_neg, min_neg = (xh.new_empty(n) for _ in range(4))
        block_c, block_d = _blocks(c, d)
        if n:
            _forward_kernel[(n,)](
                xh, yh, cand, dup, lse, pos, max_neg, min_neg, c, d, inv_temp,
                BLOCK_C=block_c, BLOCK_D=block_d,
            )  # fmt: skip
        ctx.save_for_backward(xh, yh, cand, dup, lse)
        ctx.inv_temp = inv_temp
        ctx.mark_non_differentiable(pos, max_neg, min_neg)
        return lse - pos, pos, max_neg, min_neg

    @staticmethod
    def backward(ctx, grad_ce, *_):
        xh, yh, cand, dup, lse = ctx.saved_tensors
        n, d = xh.shape
        c = cand.shape[1]
        gx = torch.empty_like(xh)
        gy = torch.zeros_like(yh)
        block_c, block_d = _blocks(c, d)
        if n:
            _backward_kernel[(n,)](
                xh, yh, cand, dup, lse, grad_ce.contiguous().float(), gx, gy, c, d,
                ctx.inv_temp, BLOCK_C=block_c, BLOCK_D=block_d,
            )  # fmt: skip
        return gx, gy, None, None, None


def contrastive_loss_triton(
    x: torch.Tensor,
    y: torch.Tensor,
    neg_idx: torch.Tensor,
    temperature: float = 0.1,
    *,
    valid: torch.Tensor | None = None,
    cross_neg_idx: torch.Tensor | None = None,
    dup_key: torch.Tensor | None = None,
    chunk_elements: int = 1 << 26,
    similarity: str = "cosine",
    extra=None,
) -> ContrastiveOutput:
    """:func:`~speechssl.kernels.contrastive.contrastive_loss` through the fused kernels.
    Explicit (codebook) negatives and fp64 inputs take the torch path (the kernels are fp32)."""
    if extra is not None or _math_dtype(x) != torch.float32:
        return _contrastive_gram(
            x, y, neg_idx, temperature, valid, cross_neg_idx, dup_key, chunk_elements, similarity,
            extra,
        )  # fmt: skip
    B, T, D = x.shape
    with torch.autocast(device_type=x.device.type, enabled=False):
        dtype = torch.float32
        xh, yh = x.to(dtype), y.to(dtype)
        if similarity == "cosine":
            xh = F.normalize(xh, dim=-1, eps=NORM_EPS)
            yh = F.normalize(yh, dim=-1, eps=NORM_EPS)
        base = T * torch.arange(B, device=x.device).view(B, 1, 1)
        pos = torch.arange(T, device=x.device).view(1, T, 1).expand(B, T, 1)
        cols = [pos + base, neg_idx.to(x.device) + base]
        if cross_neg_idx is not None:
            cols.append(cross_neg_idx.to(x.device))
        cand = torch.cat(cols, 2).reshape(B * T, -1).to(torch.int32).contiguous()
        dup = _duplicates(y, neg_idx, cross_neg_idx, dup_key, chunk_elements)
        dup = torch.cat([torch.zeros_like(dup[:, :, :1]), dup], 2).reshape(B * T, -1)
        ce, pos_logit, max_neg, min_neg = _FusedRows.apply(
            xh.reshape(B * T, D).contiguous(),
            yh.reshape(B * T, D).contiguous(),
            cand,
            dup.to(torch.int8).contiguous(),
            1.0 / temperature,
        )
        ce = ce.view(B, T)
        with torch.no_grad():
            # torch.argmax picks the positive (column 0) on ties; argmin must not be it
            correct = ((pos_logit >= max_neg) & (min_neg < pos_logit)).view(B, T)
            if valid is not None:
                correct = correct & valid
            num_rows = valid.sum() if valid is not None else torch.tensor(B * T)
        if valid is not None:
            ce = torch.where(valid, ce, torch.zeros_like(ce))
        return ContrastiveOutput(ce.sum(), correct.sum(), num_rows.to(ce.device))


register_backend("triton", "cuda", contrastive_loss_triton)
