"""The fused Triton contrastive kernel (speechssl.kernels.contrastive_triton) under Triton's CPU
interpreter: loss, accuracy and gradients against the direct fairseq-style computation with
materialised negatives, at odd sizes; bf16 inputs; every output element written.

No GPU here, so the kernels run through TRITON_INTERPRET=1 (set before the module is imported):
the same kernel source the GPU compiles, executed by Triton's interpreter; GPU timings are in
bench/contrastive.py, for a device run.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton.jit sees the kernels

import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import require_module  # noqa: E402

require_module("triton")
from speechssl.kernels import (  # noqa: E402
    contrastive_loss,
    contrastive_loss_reference,
    sample_cross_negatives,
    sample_negatives,
)
from speechssl.kernels import contrastive_triton as kt  # noqa: E402

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="needs Triton's interpreter on a CPU"
)


def _inputs(b, t, d, k, seed=0, dtype=torch.float32, duplicates=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, d, generator=g)
    y = torch.randn(b, t, d, generator=g)
    if duplicates:  # some negatives equal their positive (a repeated target row)
        y[0, 3] = y[0, 5]
        y[b - 1, 1] = y[0, 2]
    counts = torch.tensor([t] + [max(2, t - 7 * i) for i in range(1, b)])
    valid = torch.arange(t)[None, :] < counts[:, None]
    neg = sample_negatives(counts, t, k, g)
    cross = sample_cross_negatives(counts, t, 3, g)
    return x.to(dtype), y.to(dtype), neg, cross, valid


def _grads(fn, x, y, **kw):
    x, y = x.clone().requires_grad_(), y.clone().requires_grad_()
    out = fn(x, y, **kw)
    gx, gy = torch.autograd.grad(out.loss, [x, y])
    return out, gx, gy


def _rel(a, b):
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp(min=1e-30))


@pytest.mark.parametrize(
    ("b", "t", "d", "k", "cross", "similarity"),
    [
        (2, 37, 24, 5, False, "cosine"),  # T not a multiple of any block
        (2, 19, 40, 1, True, "cosine"),  # K = 1, cross-sample negatives
        (1, 110, 256, 100, False, "cosine"),  # K = 100: candidates span two blocks
        (3, 21, 32, 6, True, "dot"),  # CPC's dot product at temperature 1
    ],
)
def test_matches_the_direct_computation(b, t, d, k, cross, similarity):
    x, y, neg, cross_idx, valid = _inputs(b, t, d, k)
    temp = 0.1 if similarity == "cosine" else 1.0
    kw = dict(
        neg_idx=neg,
        temperature=temp,
        valid=valid,
        cross_neg_idx=cross_idx if cross else None,
        similarity=similarity,
    )
    ref, rgx, rgy = _grads(contrastive_loss_reference, x.double(), y.double(), **kw)
    out, gx, gy = _grads(contrastive_loss, x, y, backend="triton", **kw)
    assert abs(float(out.loss) - float(ref.loss)) <= 1e-5 * abs(float(ref.loss))
    assert _rel(gx, rgx) <= 1e-4 and _rel(gy, rgy) <= 1e-4
    assert int(out.num_correct) == int(ref.num_correct)
    assert int(out.num_rows) == int(valid.sum())


def test_bf16_inputs_within_2e_2():
    x, y, neg, _, valid = _inputs(2, 33, 64, 10)
    xb, yb = x.bfloat16(), y.bfloat16()
    ref, rgx, rgy = _grads(contrastive_loss_reference, xb.double(), yb.double(), neg_idx=neg,
                           valid=valid)  # fmt: skip
    out, gx, gy = _grads(contrastive_loss, xb, yb, neg_idx=neg, valid=valid, backend="triton")
    assert gx.dtype == torch.bfloat16
    assert abs(float(out.loss) - float(ref.loss)) <= 1e-3 * abs(float(ref.loss))
    assert _rel(gx, rgx) <= 2e-2 and _rel(gy, rgy) <= 2e-2


def test_every_output_element_is_written():
    """Kernels called on NaN-poisoned output buffers leave no NaN behind."""
    g = torch.Generator().manual_seed(1)
    n, c, d = 23, 70, 48
    xh = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=-1)
    yh = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=-1)
    cand = torch.randint(0, n, (n, c), generator=g, dtype=torch.int32)
    cand[:, 0] = torch.arange(n, dtype=torch.int32)
    dup = torch.zeros(n, c, dtype=torch.int8)
    dup[5, 7] = 1
    outs = [torch.full((n,), float("nan")) for _ in range(4)]
    block_c, block_d = kt._blocks(c, d)
    kt._forward_kernel[(n,)](xh, yh, cand, dup, *outs, c, d, 10.0, BLOCK_C=block_c,
                             BLOCK_D=block_d)  # fmt: skip
    assert all(not torch.isnan(o).any() for o in outs)
    gx = torch.full((n, d), float("nan"))
    gy = torch.zeros(n, d)
    kt._backward_kernel[(n,)](xh, yh, cand, dup, outs[0], torch.ones(n), gx, gy, c, d, 10.0,
                              BLOCK_C=block_c, BLOCK_D=block_d)  # fmt: skip
    assert not torch.isnan(gx).any() and not torch.isnan(gy).any()


def test_codebook_negatives_fall_back_to_the_torch_path():
    x, y, neg, _, valid = _inputs(2, 17, 16, 4)
    extra = torch.randn(2, 17, 3, 16)
    fused = contrastive_loss(x, y, neg, valid=valid, extra_negatives=extra, backend="triton")
    torch_path = contrastive_loss(x, y, neg, valid=valid, extra_negatives=extra, backend="torch")
    assert float(fused.loss) == pytest.approx(float(torch_path.loss), rel=1e-6)
