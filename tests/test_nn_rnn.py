"""BiLSTM on padded batches equals nn.LSTM on packed sequences, outputs and gradients."""

import pytest
import torch
from torch import nn

from speechssl.nn.rnn import BiLSTM, reverse_within_lengths


def _packed(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out


def test_reverse_within_lengths_reverses_valid_frames_only():
    x = torch.arange(10.0).view(2, 5, 1)
    out = reverse_within_lengths(x, torch.tensor([5, 3]))
    assert out[0, :, 0].tolist() == [4, 3, 2, 1, 0]
    assert out[1, :, 0].tolist() == [7, 6, 5, 8, 9]
    assert torch.equal(reverse_within_lengths(out, torch.tensor([5, 3])), x)


@pytest.mark.parametrize("num_layers", [1, 3])
def test_matches_packed_lstm_with_gradients(num_layers):
    torch.manual_seed(0)
    ours = BiLSTM(7, 5, num_layers=num_layers)
    reference = nn.LSTM(7, 5, num_layers=num_layers, bidirectional=True, batch_first=True)
    reference.load_state_dict(ours.state_dict())  # the same parameters and keys
    lengths = torch.tensor([9, 4, 1, 6])
    x = torch.randn(4, 9, 7)
    x[1, 4:] = 1e3  # padding that would change the reverse direction if it leaked in
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, expected = ours(x_ours, lengths), _packed(reference, x_ref, lengths)
    assert out.shape == (4, 9, 10)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert out[1, 4:].abs().max() == 0 and out[2, 1:].abs().max() == 0
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(ours.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_dropout_only_between_layers_and_only_in_training():
    torch.manual_seed(0)
    lstm = BiLSTM(3, 4, num_layers=2, dropout=0.5)
    x, lengths = torch.randn(2, 6, 3), torch.tensor([6, 5])
    lstm.eval()
    assert torch.equal(lstm(x, lengths), lstm(x, lengths))
    lstm.train()
    assert not torch.equal(lstm(x, lengths), lstm(x, lengths))
    single = BiLSTM(3, 4, num_layers=1, dropout=0.0).train()
    assert torch.equal(single(x, lengths), single(x, lengths))
