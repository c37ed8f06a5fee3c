"""Gumbel-softmax product quantizer (wav2vec 2.0 §2-3, Jang et al. 2017).

G codebooks of V entries each; a frame picks one entry per codebook and the picks are
concatenated (up to V^G codewords). While training the pick is a straight-through hard
Gumbel-softmax sample at temperature tau (forward one-hot, backward through the soft sample);
in eval it is the argmax.

``tau = max(start * decay ** num_updates, end)``, set through :meth:`set_num_updates`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def perplexity(probs: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Sum over codebooks of ``exp(entropy)`` of the average distribution.

    probs: ``(N, G, V)`` per-frame distributions (one-hot or soft). Returns a scalar in [G, G*V].
    """
    avg = probs.float().mean(0)
    return torch.exp(-(avg * torch.log(avg + eps)).sum(-1)).sum()


def gumbel_softmax_hard(
    logits: torch.Tensor, tau: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Straight-through Gumbel-softmax over the last dim (``F.gumbel_softmax(hard=True)``):
    one-hot forward, the soft sample's gradient backward; noise ``-log(Exp(1))`` drawn from
    ``generator`` on the CPU when given."""
    if generator is None:
        return F.gumbel_softmax(logits, tau=tau, hard=True, dim=-1)
    noise = torch.empty(logits.shape, dtype=torch.float32).exponential_(generator=generator)
    gumbels = -noise.log().to(logits.device, logits.dtype)
    soft = ((logits + gumbels) / tau).softmax(-1)
    hard = F.one_hot(soft.argmax(-1), logits.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # (N, codevector_dim): concatenated chosen entries
    codes: torch.Tensor  # (N, G) long: chosen entry per codebook
    code_perplexity: torch.Tensor  # scalar, hard assignments, no grad
    prob_perplexity: torch.Tensor  # scalar, softmax without noise or tau (differentiable)
    entries_used: torch.Tensor  # scalar long: distinct (codebook, entry) pairs in this batch
    temperature: float


class GumbelVectorQuantizer(nn.Module):
    """``(N, input_dim) -> QuantizerOutput``.

    Args:
        input_dim: frame feature size (wav2vec 2.0: the 512-d LayerNormed conv features).
        num_groups: G codebooks. num_entries: V entries per codebook.
        codevector_dim: width of the concatenated output; each entry is ``codevector_dim / G``.
        temperature: ``(start, end, decay)`` of the Gumbel temperature schedule.
        combine_groups: one table of V entries shared by the G codebooks (fairseq's
            ``combine_groups``); the picks stay per codebook.
    """

    def __init__(
        self,
        input_dim: int,
        num_groups: int = 2,
        num_entries: int = 320,
        codevector_dim: int = 256,
        temperature: tuple[float, float, float] = (2.0, 0.5, 0.999995),
        combine_groups: bool = False,
    ):
        super().__init__()
        if codevector_dim % num_groups:
            raise ValueError(
                f"codevector_dim {codevector_dim} is not divisible by {num_groups} codebooks"
            )
        self.num_groups, self.num_entries = num_groups, num_entries
        self.weight_proj = nn.Linear(input_dim, num_groups * num_entries)
        nn.init.normal_(self.weight_proj.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.weight_proj.bias)
        # (G, V, d): entries of codebook g are codevectors[g]; (1, V, d) when combined
        self.combine_groups = combine_groups
        self.codevectors = nn.Parameter(
            torch.rand(
                1 if combine_groups else num_groups, num_entries, codevector_dim // num_groups
            )
        )
        self.start_temp, self.end_temp, self.temp_decay = (float(t) for t in temperature)
        self.temperature = self.start_temp

    @property
    def num_codevectors(self) -> int:
        return self.num_groups * self.num_entries

    def table(self) -> torch.Tensor:
        """``(G, V, d)`` entries per codebook (the shared table repeated when combined)."""
        return self.codevectors.expand(self.num_groups, -1, -1)

    def sample_from_codebook(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``(n, codevector_dim)`` random codewords, one uniform entry per codebook
        (fairseq ``sample_from_codebook``, the wav2vec 2.0 ``codebook_negatives``), and their
        ``(n, G)`` entry indices."""
        idx = torch.randint(self.num_entries, (n, self.num_groups), generator=generator)
        idx = idx.to(self.codevectors.device)
        groups = torch.arange(self.num_groups, device=idx.device)
        return self.table()[groups, idx].reshape(n, -1), idx

    def set_num_updates(self, num_updates: int) -> None:
        self.temperature = max(self.start_temp * self.temp_decay**num_updates, self.end_temp)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> QuantizerOutput:
        """``(N, input_dim)`` frames; in training the Gumbel noise comes from ``generator`` (a
        CPU generator) when given, else from torch's global RNG."""
        n = x.shape[0]
        logits = self.weight_proj(x).view(n, self.num_groups, self.num_entries).float()
        codes = logits.argmax(-1)
        hard = F.one_hot(codes, self.num_entries).to(logits.dtype)
        with torch.no_grad():
            code_ppl = perplexity(hard)
            used = (hard.sum(0) > 0).sum()
        prob_ppl = perplexity(logits.softmax(-1))
        if self.training:
            onehot = gumbel_softmax_hard(logits, self.temperature, generator)
            codes = onehot.argmax(-1)  # the sampled pick, not the noiseless argmax
        else:
            onehot = hard
        quantized = torch.einsum("ngv,gvd->ngd", onehot.to(self.codevectors.dtype), self.table())
        return QuantizerOutput(
            quantized.reshape(n, -1), codes, code_ppl, prob_ppl, used, self.temperature
        )
