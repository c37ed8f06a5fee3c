"""Model noise for the noisy student: the residual BiLSTM head and LayerDrop (stochastic depth)
against the composition written out here from the head's own layers, the drop frequency
against its binomial range, and the config's checks."""

from __future__ import annotations

import pytest
import torch

from speechssl.asr.model import ASRConfig, _BLSTMHead, _TransformerHead
from speechssl.features.specaug import SpecAugConfig


def _cfg(**kw) -> ASRConfig:
    base = dict(head="blstm", head_layers=3, head_dim=8, dropout=0.0, residual=True,
                specaug=SpecAugConfig(0, 0, 0, 0, 0))  # fmt: skip
    return ASRConfig(**{**base, **kw})


def test_residual_head_at_test_time_adds_each_layers_input():
    torch.manual_seed(0)
    head = _BLSTMHead(5, _cfg(layerdrop=0.5)).eval()
    x, lengths = torch.randn(2, 7, 5), torch.tensor([7, 4])
    l0, l1, l2 = head.layers
    h0 = l0(x, lengths)
    h1 = h0 + l1(h0, lengths)
    expected = h1 + l2(h1, lengths)
    assert torch.allclose(head(x, lengths), expected, atol=1e-6)  # no drop, no rescaling
    assert head(x, lengths)[1, 4:].abs().max() == 0  # padding stays zero


def test_layerdrop_drops_a_branch_per_batch_with_probability_p():
    torch.manual_seed(0)
    p = 0.3
    head = _BLSTMHead(5, _cfg(head_layers=2, layerdrop=p)).train()
    x, lengths = torch.randn(2, 6, 5), torch.tensor([6, 6])
    h0 = head.layers[0](x, lengths)
    kept = h0 + head.layers[1](h0, lengths) / (1 - p)
    dropped = 0
    for _ in range(200):
        y = head(x, lengths)
        if torch.allclose(y, h0, atol=1e-6):
            dropped += 1
        else:
            assert torch.allclose(y, kept, atol=1e-5)  # kept: scaled by 1 / (1 - p)
    assert 35 <= dropped <= 85  # binomial(200, 0.3): 60 +- 6.5
    y = head(x, lengths)
    y.sum().backward()  # a dropped branch still has a gradient (zero), as DDP needs
    assert all(q.grad is not None for q in head.parameters())


def test_transformer_head_layerdrop_keeps_the_plain_path_at_test_time():
    torch.manual_seed(0)
    cfg = _cfg(head="transformer", head_layers=2, head_dim=8, head_heads=2, residual=False)
    plain = _TransformerHead(5, cfg).eval()
    dropping = _TransformerHead(5, _cfg(**{**cfg.__dict__, "layerdrop": 0.4})).eval()
    dropping.load_state_dict(plain.state_dict())
    x, lengths = torch.randn(2, 6, 5), torch.tensor([6, 3])
    assert torch.allclose(plain(x, lengths), dropping(x, lengths), atol=1e-5)


def test_layerdrop_needs_a_residual_blstm_and_a_probability():
    with pytest.raises(ValueError, match="model.residual=true"):
        _cfg(residual=False, layerdrop=0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        _cfg(layerdrop=1.0)
