"""Kernels with a reference implementation each: the contrastive (InfoNCE) loss of wav2vec 2.0
and CPC (torch Gram + gather path; fused Triton kernel in ``contrastive_triton``), and batched
greedy CTC decoding (``ctc_greedy``)."""

from speechssl.kernels.contrastive import (
    ContrastiveOutput,
    contrastive_loss,
    contrastive_loss_reference,
    register_backend,
    sample_cross_negatives,
    sample_negatives,
)

__all__ = [
    "ContrastiveOutput",
    "contrastive_loss",
    "contrastive_loss_reference",
    "register_backend",
    "sample_cross_negatives",
    "sample_negatives",
]
