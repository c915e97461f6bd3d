"""Our LSTM/GRU against torch.nn's with the same weights: outputs and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aiforge.sequence.rnn import RNN, GRUCell, LSTMCell

TOL = 1e-5


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_cell_matches_torch_cell(kind: str) -> None:
    torch.manual_seed(0)
    ours = LSTMCell(5, 7) if kind == "lstm" else GRUCell(5, 7)
    ref = nn.LSTMCell(5, 7) if kind == "lstm" else nn.GRUCell(5, 7)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 5)
    h = torch.randn(3, 7)
    if kind == "lstm":
        c = torch.randn(3, 7)
        got, want = ours(x, (h, c)), ref(x, (h, c))
        assert max(_max_diff(g, w) for g, w in zip(got, want, strict=True)) <= TOL
    else:
        assert _max_diff(ours(x, h), ref(x, h)) <= TOL


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize(("layers", "bidirectional"), [(1, False), (2, False), (1, True), (3, True)])
def test_rnn_matches_torch_outputs_and_gradients(kind: str, layers: int, bidirectional: bool) -> None:
    torch.manual_seed(1)
    ref_type = nn.LSTM if kind == "lstm" else nn.GRU
    ref = ref_type(4, 6, num_layers=layers, bidirectional=bidirectional, batch_first=True)
    ours = RNN(kind, 4, 6, num_layers=layers, bidirectional=bidirectional)  # type: ignore[arg-type]
    ours.load_torch_weights(ref)
    x = torch.randn(3, 9, 4)
    n_states = layers * (2 if bidirectional else 1)
    h0 = torch.randn(n_states, 3, 6)
    state = (h0, torch.randn(n_states, 3, 6)) if kind == "lstm" else h0

    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, final = ours(x_ours, state)
    out_ref, final_ref = ref(x_ref, state)
    assert _max_diff(out, out_ref) <= TOL
    finals = zip(final, final_ref, strict=True) if kind == "lstm" else [(final, final_ref)]
    for got, want in finals:
        assert _max_diff(got, want) <= TOL

    # The same scalar loss on both, touching every output and the final state.
    weight = torch.randn_like(out)
    h_last = final[0] if isinstance(final, tuple) else final
    h_last_ref = final_ref[0] if isinstance(final_ref, tuple) else final_ref
    ((out * weight).sum() + h_last.square().sum()).backward()
    ((out_ref * weight).sum() + h_last_ref.square().sum()).backward()
    assert x_ours.grad is not None and x_ref.grad is not None
    assert _max_diff(x_ours.grad, x_ref.grad) <= TOL
    for layer in range(layers):
        for direction in range(2 if bidirectional else 1):
            cell = ours.cells[layer * (2 if bidirectional else 1) + direction]
            suffix = f"l{layer}" + ("_reverse" if direction else "")
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                grad = getattr(cell, name).grad
                grad_ref = getattr(ref, f"{name}_{suffix}").grad
                assert _max_diff(grad, grad_ref) <= TOL, f"{name}_{suffix}"


def test_rnn_default_state_is_zeros() -> None:
    torch.manual_seed(2)
    ref = nn.GRU(3, 5, batch_first=True)
    ours = RNN("gru", 3, 5)
    ours.load_torch_weights(ref)
    x = torch.randn(2, 4, 3)
    assert _max_diff(ours(x)[0], ref(x)[0]) <= TOL


def test_rnn_rejects_unknown_cell() -> None:
    with pytest.raises(ValueError, match="lstm"):
        RNN("rnn", 3, 5)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_masked_padding_matches_packed_sequences(kind: str) -> None:
    """Right-padded batch with a mask == torch's packed sequence (outputs on real steps, final state)."""
    torch.manual_seed(3)
    ref = (nn.LSTM if kind == "lstm" else nn.GRU)(3, 5, num_layers=2, bidirectional=True,
                                                  batch_first=True)
    ours = RNN(kind, 3, 5, num_layers=2, bidirectional=True)  # type: ignore[arg-type]
    ours.load_torch_weights(ref)
    lengths = torch.tensor([6, 2, 4])
    x = torch.randn(3, 6, 3)
    mask = torch.arange(6)[None, :] < lengths[:, None]             # (B, T)
    out, final = ours(x, mask=mask)
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out_ref, final_ref = ref(packed)
    out_ref, _ = nn.utils.rnn.pad_packed_sequence(out_ref, batch_first=True, total_length=6)
    assert _max_diff(out[mask], out_ref[mask]) <= TOL
    h = final[0] if isinstance(final, tuple) else final
    h_ref = final_ref[0] if isinstance(final_ref, tuple) else final_ref
    assert _max_diff(h, h_ref) <= TOL
