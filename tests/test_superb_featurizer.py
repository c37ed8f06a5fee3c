"""The SUPERB featurizer: softmax-weighted sum of hidden states, single layer, saved weights."""

from __future__ import annotations

import json
import math

import matplotlib.image
import pytest
import torch
from torch.nn import functional as F

from speechssl.superb.featurizer import Featurizer


def hidden_states(num: int = 3, batch: int = 2, frames: int = 5, dim: int = 4):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(batch, frames, dim, generator=g) for _ in range(num)]


def test_weights_start_uniform_and_follow_the_softmax():
    states = hidden_states()
    featurizer = Featurizer(3)
    torch.testing.assert_close(featurizer(states), sum(states) / 3)
    with torch.no_grad():
        featurizer.weights.copy_(torch.tensor([0.0, math.log(2), math.log(3)]))
    expected = (1 * states[0] + 2 * states[1] + 3 * states[2]) / 6
    torch.testing.assert_close(featurizer(states), expected)
    torch.testing.assert_close(featurizer.layer_weights(), torch.tensor([1, 2, 3]) / 6)
    # a (L, B, T, D) tensor is the same as the list
    torch.testing.assert_close(featurizer(torch.stack(states)), expected)


def test_weights_are_trained_by_the_loss():
    states = hidden_states()
    featurizer = Featurizer(3)
    optimizer = torch.optim.Adam(featurizer.parameters(), lr=0.1)
    for _ in range(50):  # pull the output towards hidden state 2
        loss = (featurizer(states) - states[2]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    weights = featurizer.layer_weights().detach()
    assert int(weights.argmax()) == 2 and float(weights[2]) > 0.8


def test_single_layer_and_single_hidden_state_pass_through():
    states = hidden_states()
    assert Featurizer(3, layer=1)(states) is states[1]
    assert Featurizer(3, layer=-1)(states) is states[2]
    assert list(Featurizer(3, layer=0).parameters()) == []
    fbank = hidden_states(1)
    assert Featurizer(1)(fbank) is fbank[0]
    assert list(Featurizer(1).parameters()) == []
    with pytest.raises(ValueError, match="layer 3 does not exist"):
        Featurizer(3, layer=3)
    with pytest.raises(ValueError, match="built for 3 hidden states, got 2"):
        Featurizer(3)(states[:2])


def test_normalize_layer_norms_each_hidden_state():
    states = [s * (k + 1) * 10 + k for k, s in enumerate(hidden_states())]
    out = Featurizer(3, normalize=True)(states)
    expected = sum(F.layer_norm(s, s.shape[-1:]) for s in states) / 3
    torch.testing.assert_close(out, expected)
    single = Featurizer(3, layer=2, normalize=True)(states)
    torch.testing.assert_close(single.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)


def test_weights_saved_as_json_and_plotted(tmp_path):
    featurizer = Featurizer(4)
    with torch.no_grad():
        featurizer.weights.copy_(torch.tensor([0.0, 1.0, 2.0, 0.5]))
    info = json.loads(featurizer.save_weights(tmp_path / "w.json").read_text())
    assert info["layer"] is None
    assert info["layer_weights"] == pytest.approx(F.softmax(featurizer.weights, 0).tolist(), 1e-5)
    assert sum(info["layer_weights"]) == pytest.approx(1.0, abs=1e-5)
    image = matplotlib.image.imread(featurizer.plot_weights(tmp_path / "w.png", "test"))
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    single = json.loads(Featurizer(4, layer=-2).save_weights(tmp_path / "s.json").read_text())
    assert single == {"layer_weights": [0.0, 0.0, 1.0, 0.0], "layer": 2, "normalize": False}
