"""wav2vec 2.0 contrastive (InfoNCE) loss with sampled in-utterance negatives.

For each prediction ``x[b, t]`` the candidates are its positive ``y[b, t]`` and K negatives
``y[b, neg_idx[b, t, k]]`` (optionally also ``y.flat[cross_neg_idx[b, t, k]]`` from any
utterance). Logits are cosine similarities over a temperature (0.1); a negative *equal* to the
positive gets logit -inf; the loss is the cross-entropy of the positive, **summed** over rows
(Baevski et al. 2020, eq. 3; fairseq ``compute_preds`` + ``infonce``).

Two exact implementations:

- :func:`contrastive_loss_reference` — the fairseq layout: gathers the negatives into a
  ``(B, T, K+1, D)`` tensor and takes cosines against it. Memory ~ several ``(K+1)·B·T·D``
  tensors (forward intermediates + their gradients): at B=16, T=800, D=256, K=100 one such fp32
  tensor is 1.3 GB.
- the ``"torch"`` backend of :func:`contrastive_loss` — all candidates of utterance b are rows
  of ``y_b``, so normalise x and y once, take the Gram matrix ``S_b = x̂_b ŷ_bᵀ`` with one batched
  GEMM, and gather the K+1 needed columns of each row. Memory ~ ``B·T·T`` (the Gram matrix, and
  its gradient in backward) + ``B·T·(K+1)`` logits: 41 MB at the same size. Measured peak
  extra memory of forward + backward there (CPU, fp32, ``tests/test_contrastive.py``):
  reference ~8.9 GB, Gram + gather ~150 MB. Arithmetic is
  ``2·B·T²·D`` instead of ``2·B·T·K·D``, which GEMMs do far faster than gathers. The y gradient
  comes from the GEMM backward: no scatter-add. When ``B·n·T`` for all ``T`` rows would exceed
  ``chunk_elements``, rows are processed in chunks of ``n`` so the Gram never exceeds it.

``backend="auto"`` picks a registered fused kernel for the tensors' device if there is one
(:func:`register_backend`): on CUDA the Triton kernel of
:mod:`speechssl.kernels.contrastive_triton` (imported on first use), else ``"torch"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

NORM_EPS = 1e-8  # as torch.cosine_similarity


class ContrastiveOutput(NamedTuple):
    loss: torch.Tensor  # scalar: summed cross-entropy over valid rows (nats)
    num_correct: torch.Tensor  # detached: rows whose positive has the top logit and not the bottom
    num_rows: torch.Tensor  # detached: valid rows


ContrastiveBackend = Callable[..., ContrastiveOutput]
_FUSED_BACKENDS: dict[str, dict[str, ContrastiveBackend]] = {}  # device type -> name -> fn


def register_backend(name: str, device_type: str, fn: ContrastiveBackend) -> None:
    """Register a fused implementation with :func:`contrastive_loss`'s signature (minus
    ``backend``) for ``device_type`` ("cuda", ...); ``backend="auto"`` then prefers it there."""
    _FUSED_BACKENDS.setdefault(device_type, {})[name] = fn


def _load_fused_kernels() -> None:
    """Import (and so register) the Triton kernel module once; without Triton, nothing."""
    try:
        import speechssl.kernels.contrastive_triton  # noqa: F401
    except ImportError:
        pass


def sample_negatives(
    counts: torch.Tensor, max_len: int, num_negatives: int, generator: torch.Generator
) -> torch.Tensor:
    """K negatives per frame, uniform with replacement over the *other* valid frames of its own
    utterance (fairseq: draw from ``{0..n-2}`` and shift by one at or after t).

    counts: ``(B,)`` valid frames per utterance (each >= 2 where > 0). Returns ``(B, T, K)``
    long indices into the utterance's frames, on the generator's device; rows ``t >= counts[b]``
    hold 0.
    """
    b = counts.shape[0]
    counts = counts.to(generator.device).long()
    if num_negatives == 0 or max_len == 0:
        return torch.zeros(b, max_len, num_negatives, dtype=torch.long, device=generator.device)
    u = torch.rand(b, max_len, num_negatives, generator=generator, device=generator.device)
    high = (counts - 1).clamp(min=0).view(b, 1, 1)
    j = torch.minimum((u * high).long(), (high - 1).clamp(min=0))
    t = torch.arange(max_len, device=generator.device).view(1, -1, 1)
    j = j + (j >= t).long()
    valid = t < counts.view(b, 1, 1)
    return torch.where(valid & (high > 0), j, torch.zeros_like(j))


def sample_cross_negatives(
    counts: torch.Tensor,
    max_len: int,
    num_negatives: int,
    generator: torch.Generator,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """K negatives per frame drawn from the valid frames of the whole batch except the frame
    itself; with ``groups`` (``(B,)`` ints, e.g. speaker ids), only from the utterances of the
    frame's own group (its own utterance included: CPC's same-speaker sampling). Returns
    ``(B, T, K)`` long indices into ``y.reshape(B * T, D)``; rows of invalid frames, and rows
    whose group has fewer than 2 valid frames, hold 0."""
    b = counts.shape[0]
    dev = generator.device
    counts = counts.to(dev).long()
    valid = (torch.arange(max_len, device=dev)[None, :] < counts[:, None]).reshape(-1)
    group = torch.zeros(b, dtype=torch.long, device=dev) if groups is None else groups.to(dev)
    group = group.long().repeat_interleave(max_len)  # (B * T,) each frame's group
    # the pool: valid frames ordered by (group, flat index); each group a contiguous run
    order = torch.argsort(group * (b * max_len) + torch.arange(b * max_len, device=dev))
    pool = order[valid[order]]
    if num_negatives == 0 or pool.numel() < 2:
        return torch.zeros(b, max_len, num_negatives, dtype=torch.long, device=dev)
    _, sizes = torch.unique_consecutive(group[pool], return_counts=True)
    starts = torch.cumsum(sizes, 0) - sizes
    run = torch.repeat_interleave(torch.arange(sizes.numel(), device=dev), sizes)
    # per frame: where its group's run starts in the pool, its size, the frame's place in it
    start, size, rank = (torch.zeros(b * max_len, dtype=torch.long, device=dev) for _ in "abc")
    start[pool], size[pool] = starts[run], sizes[run]
    rank[pool] = torch.arange(pool.numel(), device=dev) - starts[run]
    # draw from the other size - 1 entries of the frame's group
    u = torch.rand(b * max_len, num_negatives, generator=generator, device=dev)
    high = (size - 1).clamp(min=0)[:, None]
    j = torch.minimum((u * high).long(), (high - 1).clamp(min=0))
    j = j + (j >= rank[:, None]).long()
    out = pool[(start[:, None] + j).clamp(max=pool.numel() - 1)]
    keep = valid[:, None] & (high > 0)
    return torch.where(keep, out, torch.zeros_like(out)).view(b, max_len, num_negatives)


def _math_dtype(x: torch.Tensor) -> torch.dtype:
    """fp32 for fp16/bf16/fp32 inputs (fairseq takes cosines in fp32), fp64 for fp64."""
    return torch.promote_types(x.dtype, torch.float32)


def _rows(y: torch.Tensor, neg_idx: torch.Tensor) -> torch.Tensor:
    """``y[b, neg_idx[b, t, k]]`` -> ``(B, T, K, D)``."""
    b = torch.arange(y.shape[0], device=y.device).view(-1, 1, 1)
    return y[b, neg_idx]


_HASH_PRIME = 2_147_483_647  # 2^31 - 1: products of residues stay below 2^62


def _row_hash(y: torch.Tensor) -> torch.Tensor:
    """``(N, D) -> (N,)`` int64 hash of each row's bit pattern, equal for equal rows.

    Rows are hashed as ``sum_d bits_d * w_d mod p`` over their integer bit patterns (``-0.0``
    folded into ``+0.0`` first, as ``==`` treats them alike), in exact integer arithmetic, so
    it does not depend on summation order. Distinct rows collide with probability ~1/p; callers
    confirm hash matches by comparing the rows.
    """
    width = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[y.element_size()]
    weights = torch.randint(
        1, _HASH_PRIME, (y.shape[1],), generator=torch.Generator().manual_seed(y.shape[1])
    ).to(y.device)
    out = torch.zeros(y.shape[0], dtype=torch.int64, device=y.device)
    step = max(1, (1 << 22) // max(1, y.shape[1]))
    for r0 in range(0, y.shape[0], step):
        bits = (y[r0 : r0 + step] + 0.0).view(width).to(torch.int64) % _HASH_PRIME
        out[r0 : r0 + step] = (bits * weights % _HASH_PRIME).sum(1) % _HASH_PRIME
    return out


def _duplicates(
    y: torch.Tensor,
    neg_idx: torch.Tensor,
    cross_neg_idx: torch.Tensor | None,
    dup_key: torch.Tensor | None,
    chunk_elements: int,
) -> torch.Tensor:
    """``(B, T, K[+Kc])`` bool: candidate k equals the positive.

    With ``dup_key`` (``(B, T)`` or ``(B, T, G)`` ints, e.g. the quantizer codes): equality of
    keys. Else exact equality of the y rows (fairseq's test), without gathering them: compare
    row hashes, then confirm the (few) hash matches row by row, ``chunk_elements`` at a time.
    """
    B, T, D = y.shape
    exact = dup_key is None
    if exact:
        y = y.detach()
        dup_key = _row_hash(y.reshape(B * T, D)).view(B, T)
    key = dup_key if dup_key.dim() == 3 else dup_key.unsqueeze(-1)
    flat_idx = neg_idx + T * torch.arange(B, device=y.device).view(B, 1, 1)
    if cross_neg_idx is not None:
        flat_idx = torch.cat([flat_idx, cross_neg_idx], 2)
    flat_key = key.reshape(B * T, -1)
    dup = (flat_key[flat_idx] == key.unsqueeze(2)).all(-1)
    if exact:
        hits = dup.nonzero()  # (N, 3): b, t, k
        step = max(1, chunk_elements // max(1, D))
        flat_y = y.reshape(B * T, D)
        for h0 in range(0, hits.shape[0], step):
            b, t, k = hits[h0 : h0 + step].unbind(1)
            same = (flat_y[flat_idx[b, t, k]] == flat_y[b * T + t]).all(-1)
            dup[b, t, k] = same
    return dup


def _finish(
    logits: torch.Tensor, dup: torch.Tensor, valid: torch.Tensor | None
) -> ContrastiveOutput:
    """logits: ``(B, T, 1 + K)`` (column 0 = positive), already over the temperature."""
    logits = torch.cat([logits[:, :, :1], logits[:, :, 1:].masked_fill(dup, float("-inf"))], 2)
    ce = torch.logsumexp(logits, -1) - logits[:, :, 0]
    with torch.no_grad():
        lg = logits.detach()
        correct = (lg.argmax(-1) == 0) & (lg.argmin(-1) != 0)
        if valid is not None:
            correct = correct & valid
        num_rows = valid.sum() if valid is not None else torch.tensor(ce.numel())
    if valid is not None:
        ce = torch.where(valid, ce, torch.zeros_like(ce))
    return ContrastiveOutput(ce.sum(), correct.sum(), num_rows.to(ce.device))


def _contrastive_gram(
    x: torch.Tensor,
    y: torch.Tensor,
    neg_idx: torch.Tensor,
    temperature: float,
    valid: torch.Tensor | None,
    cross_neg_idx: torch.Tensor | None,
    dup_key: torch.Tensor | None,
    chunk_elements: int,
    similarity: str = "cosine",
    extra: tuple[torch.Tensor, torch.Tensor | None] | None = None,
) -> ContrastiveOutput:
    B, T, D = x.shape
    with torch.autocast(device_type=x.device.type, enabled=False):
        dtype = _math_dtype(x)
        xh, yh = x.to(dtype), y.to(dtype)
        if similarity == "cosine":
            xh = F.normalize(xh, dim=-1, eps=NORM_EPS)
            yh = F.normalize(yh, dim=-1, eps=NORM_EPS)
        pos = torch.arange(T, device=x.device).view(1, T, 1).expand(B, T, 1)
        cols = torch.cat([pos, neg_idx], 2)
        rows = max(1, chunk_elements // max(1, B * T))
        parts = []
        for r0 in range(0, T, rows):
            gram = torch.bmm(xh[:, r0 : r0 + rows], yh.transpose(1, 2))  # (B, n, T)
            parts.append(gram.gather(2, cols[:, r0 : r0 + rows]))
        logits = torch.cat(parts, 1) if len(parts) > 1 else parts[0]
        if cross_neg_idx is not None:
            xf, yf = xh.reshape(B * T, D), yh.reshape(B * T, D)
            cf = cross_neg_idx.reshape(B * T, -1)
            flat_rows = max(1, chunk_elements // max(1, B * T))
            cross = [
                (xf[r0 : r0 + flat_rows] @ yf.T).gather(1, cf[r0 : r0 + flat_rows])
                for r0 in range(0, B * T, flat_rows)
            ]
            logits = torch.cat([logits, torch.cat(cross, 0).view(B, T, -1)], 2)
        dup = _duplicates(y, neg_idx, cross_neg_idx, dup_key, chunk_elements)
        if extra is not None:
            logits, dup = _with_extra(x, y, logits, dup, extra, similarity)
        return _finish(logits / temperature, dup, valid)


def _similarity(x: torch.Tensor, cands: torch.Tensor, similarity: str) -> torch.Tensor:
    """``x`` ``(B, T, D)`` against ``cands`` ``(B, T, K, D)`` -> ``(B, T, K)`` in fp32+."""
    dtype = _math_dtype(x)
    if similarity == "cosine":
        return torch.cosine_similarity(x.to(dtype).unsqueeze(2), cands.to(dtype), dim=-1)
    return (x.to(dtype).unsqueeze(2) * cands.to(dtype)).sum(-1)


def _with_extra(x, y, logits, dup, extra, similarity):
    """Append explicit negatives ``(B, T, Ke, D)`` (wav2vec 2.0's codebook negatives) to the
    logits; their duplicate mask is given, or exact equality with the positive."""
    negs, negs_dup = extra
    if negs_dup is None:
        negs_dup = (negs == y.unsqueeze(2)).all(-1)
    with torch.autocast(device_type=x.device.type, enabled=False):
        more = _similarity(x, negs, similarity)
    return torch.cat([logits, more], 2), torch.cat([dup, negs_dup], 2)


def contrastive_loss_reference(
    x: torch.Tensor,
    y: torch.Tensor,
    neg_idx: torch.Tensor,
    temperature: float = 0.1,
    valid: torch.Tensor | None = None,
    cross_neg_idx: torch.Tensor | None = None,
    similarity: str = "cosine",
    extra_negatives: torch.Tensor | None = None,
    extra_dup: torch.Tensor | None = None,
) -> ContrastiveOutput:
    """The direct computation (fairseq ``compute_preds``): materialise the ``(B, T, K+1, D)``
    candidates, cosine (or dot product) against x in fp32, -inf where a negative equals the
    positive, CE sum.

    x, y: ``(B, T, D)``; neg_idx: ``(B, T, K)`` in-utterance frame indices; valid: ``(B, T)``
    bool rows that count (None: all); cross_neg_idx: ``(B, T, Kc)`` indices into
    ``y.reshape(B * T, D)``.
    """
    B, T, D = y.shape
    negs = _rows(y, neg_idx)
    if cross_neg_idx is not None:
        negs = torch.cat([negs, y.reshape(B * T, D)[cross_neg_idx]], 2)
    dup = (negs == y.unsqueeze(2)).all(-1)
    if extra_negatives is not None:
        negs = torch.cat([negs, extra_negatives], 2)
        if extra_dup is None:
            extra_dup = (extra_negatives == y.unsqueeze(2)).all(-1)
        dup = torch.cat([dup, extra_dup], 2)
    logits = _similarity(x, torch.cat([y.unsqueeze(2), negs], 2), similarity)
    return _finish(logits / temperature, dup, valid)


def contrastive_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    neg_idx: torch.Tensor,
    temperature: float = 0.1,
    *,
    valid: torch.Tensor | None = None,
    cross_neg_idx: torch.Tensor | None = None,
    dup_key: torch.Tensor | None = None,
    similarity: str = "cosine",
    extra_negatives: torch.Tensor | None = None,
    extra_dup: torch.Tensor | None = None,
    backend: str = "auto",
    chunk_elements: int = 1 << 26,
) -> ContrastiveOutput:
    """Contrastive loss without materialising the negatives.

    Args:
        x: ``(B, T, D)`` predictions (context network output at masked frames, projected).
        y: ``(B, T, D)`` targets (quantized features of the same frames); candidates of row
            ``(b, t)`` are ``y[b, t]`` (positive) and the negatives.
        neg_idx: ``(B, T, K)`` long, negatives as frame indices within the same utterance.
        temperature: logit temperature kappa (0.1).
        valid: ``(B, T)`` bool, rows that count (None: all); negatives of valid rows must
            point at valid frames (see :func:`sample_negatives`).
        cross_neg_idx: ``(B, T, Kc)`` long, extra negatives as indices into
            ``y.reshape(B * T, D)``.
        dup_key: ``(B, T)`` or ``(B, T, G)`` ints whose equality means "same target" (the
            quantizer codes); None compares the y rows exactly (same result, more work).
        similarity: ``"cosine"`` (wav2vec 2.0) or ``"dot"`` (CPC's bilinear score
            ``z_{t+k}ᵀ W_k c_t``, with ``x = W_k c`` and temperature 1).
        extra_negatives: ``(B, T, Ke, D)`` negatives that are not rows of ``y`` (wav2vec 2.0's
            ``codebook_negatives``: random codewords), after the others; materialised, so
            for a few per row.
        extra_dup: ``(B, T, Ke)`` bool, which of them equal the positive (e.g. by code);
            None compares the vectors exactly.
        backend: ``"auto"``, ``"torch"`` (Gram + gather) or ``"reference"``.
        chunk_elements: largest Gram block (elements) the torch backend materialises.
    Returns:
        :class:`ContrastiveOutput` with the summed loss (differentiable w.r.t. x and y).
    """
    if x.shape != y.shape or x.dim() != 3:
        raise ValueError(f"x and y must both be (B, T, D); found {tuple(x.shape)}, {y.shape}")
    if neg_idx.shape[:2] != x.shape[:2]:
        raise ValueError(f"neg_idx must be (B, T, K); found {tuple(neg_idx.shape)}")
    if similarity not in ("cosine", "dot"):
        raise ValueError(f"similarity must be 'cosine' or 'dot', not {similarity!r}")
    if extra_negatives is not None and extra_negatives.shape[:2] != x.shape[:2]:
        raise ValueError(f"extra_negatives must be (B, T, Ke, D); found {extra_negatives.shape}")
    extra = None if extra_negatives is None else (extra_negatives, extra_dup)
    options = dict(
        extra=extra,
        valid=valid,
        cross_neg_idx=cross_neg_idx,
        dup_key=dup_key,
        chunk_elements=chunk_elements,
        similarity=similarity,
    )
    if backend == "triton" or (backend == "auto" and x.device.type == "cuda"):
        _load_fused_kernels()
    if backend == "auto":
        fused = _FUSED_BACKENDS.get(x.device.type)
        if fused:
            return next(iter(fused.values()))(x, y, neg_idx, temperature, **options)
        backend = "torch"
    if backend == "torch":
        return _contrastive_gram(
            x,
            y,
            neg_idx,
            temperature,
            valid,
            cross_neg_idx,
            dup_key,
            chunk_elements,
            similarity,
            extra,
        )
    if backend == "reference":
        return contrastive_loss_reference(
            x,
            y,
            neg_idx,
            temperature,
            valid,
            cross_neg_idx,
            similarity,
            extra_negatives,
            extra_dup,
        )
    for fns in _FUSED_BACKENDS.values():
        if backend in fns:
            return fns[backend](x, y, neg_idx, temperature, **options)
    raise ValueError(
        f"unknown contrastive backend {backend!r}; known: auto, torch, reference"
        + "".join(f", {n}" for fns in _FUSED_BACKENDS.values() for n in fns)
    )
