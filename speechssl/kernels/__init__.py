"""Kernels with a reference implementation each: the wav2vec 2.0 contrastive loss."""

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
