"""LSTM and GRU written out gate by gate, plus the multi-layer, bidirectional wrapper.

The parameters carry the same names, shapes and gate order as `torch.nn.LSTM` / `torch.nn.GRU`
(`weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`; gates stacked i, f, g, o for the LSTM and
r, z, n for the GRU), so weights copy across one to one and the tests can check that both give
the same outputs and gradients.

LSTM (Hochreiter and Schmidhuber, 1997; forget gate from Gers et al., 2000):
    i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)        input gate
    f = sigmoid(W_if x + b_if + W_hf h + b_hf)        forget gate
    g = tanh   (W_ig x + b_ig + W_hg h + b_hg)        candidate cell
    o = sigmoid(W_io x + b_io + W_ho h + b_ho)        output gate
    c' = f * c + i * g                                the cell adds, so gradients flow back
    h' = o * tanh(c')                                 through c without vanishing

GRU (Cho et al., 2014):
    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)        reset gate
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)        update gate
    n = tanh   (W_in x + b_in + r * (W_hn h + b_hn))  candidate; r gates the recurrent part
    h' = (1 - z) * n + z * h

The input half of every gate (W_i* x + b_i*) does not depend on the recurrence, so a layer
computes it for all time steps in one matmul and loops only over the recurrent half.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

CellKind = Literal["lstm", "gru"]
LSTMState = tuple[torch.Tensor, torch.Tensor]


class _Cell(nn.Module):
    """Weights of one recurrent cell with `gates` gates, initialised U(-1/sqrt(H), 1/sqrt(H))
    like torch's."""

    gates: int

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(self.gates * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(self.gates * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(self.gates * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(self.gates * hidden_size))
        bound = 1.0 / math.sqrt(hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def project_input(self, x: torch.Tensor) -> torch.Tensor:
        """W_i* x + b_i* for every gate at once: (..., I) -> (..., gates*H)."""
        return x @ self.weight_ih.T + self.bias_ih


class LSTMCell(_Cell):
    gates = 4

    def step(self, gx: torch.Tensor, state: LSTMState) -> LSTMState:
        """One time step from the projected input `gx` (B, 4H) and the state (h, c), each (B, H)."""
        h, c = state
        gates = gx + h @ self.weight_hh.T + self.bias_hh         # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=1)                      # each (B, H)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c

    def forward(self, x: torch.Tensor, state: LSTMState | None = None) -> LSTMState:
        """x (B, I) -> (h', c'), like torch.nn.LSTMCell."""
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            state = (zeros, zeros)
        return self.step(self.project_input(x), state)


class GRUCell(_Cell):
    gates = 3

    def step(self, gx: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One time step from the projected input `gx` (B, 3H) and the hidden state h (B, H)."""
        gh = h @ self.weight_hh.T + self.bias_hh                # (B, 3H)
        x_r, x_z, x_n = gx.chunk(3, dim=1)                      # each (B, H)
        h_r, h_z, h_n = gh.chunk(3, dim=1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        return (1 - z) * n + z * h

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, I) -> h', like torch.nn.GRUCell."""
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_size)
        return self.step(self.project_input(x), h)


def _run_direction(cell: _Cell, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor | None,
                   reverse: bool, mask: torch.Tensor | None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Run one cell over x (B, T, I): outputs (B, T, H) and the final h (and c for the LSTM).

    Where mask (B, T) is False (padding) the state passes through unchanged, so a padded
    sequence ends with the state of its last real step, and a reversed run starts at its
    last real step, as torch's packed sequences do."""
    gx = cell.project_input(x)                                  # (B, T, gates*H), one matmul
    steps = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
    outputs: list[torch.Tensor] = [x.new_empty(0)] * x.shape[1]
    h, c = h0, c0
    for t in steps:
        if isinstance(cell, LSTMCell):
            assert c is not None
            h_new, c_new = cell.step(gx[:, t], (h, c))
            c = c_new if mask is None else torch.where(mask[:, t, None], c_new, c)
        else:
            assert isinstance(cell, GRUCell)
            h_new = cell.step(gx[:, t], h)
        h = h_new if mask is None else torch.where(mask[:, t, None], h_new, h)
        outputs[t] = h                                          # reversed runs still align with t
    return torch.stack(outputs, dim=1), h, c


class RNN(nn.Module):
    """A stack of LSTM or GRU layers, optionally bidirectional, batch first.

    Same contract as torch.nn.LSTM/GRU(batch_first=True): `forward(x, state)` returns the top
    layer's outputs (B, T, D*H) and the final state, h_n (and c_n) shaped (L*D, B, H) with
    index layer*D + direction. Each layer above the first reads both directions' outputs of the
    layer below; dropout is applied between layers during training only.
    """

    def __init__(self, kind: CellKind, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if kind not in ("lstm", "gru"):
            raise ValueError(f"kind must be 'lstm' or 'gru', got {kind!r}")
        self.kind, self.hidden_size, self.num_layers = kind, hidden_size, num_layers
        self.directions = 2 if bidirectional else 1
        cell_type = LSTMCell if kind == "lstm" else GRUCell
        self.cells = nn.ModuleList(
            cell_type(input_size if layer == 0 else hidden_size * self.directions, hidden_size)
            for layer in range(num_layers) for _ in range(self.directions)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, state: torch.Tensor | LSTMState | None = None,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | LSTMState]:
        """x (B, T, I); mask (B, T) bool, True on real steps, for right-padded batches."""
        b = x.shape[0]
        n_states = self.num_layers * self.directions
        if state is None:
            zeros = x.new_zeros(n_states, b, self.hidden_size)
            h0, c0 = zeros, (zeros if self.kind == "lstm" else None)
        elif isinstance(state, tuple):
            h0, c0 = state
        else:
            h0, c0 = state, None
        h_n, c_n = [], []
        layer_input = x                                         # (B, T, I)
        for layer in range(self.num_layers):
            outs = []
            for direction in range(self.directions):
                k = layer * self.directions + direction
                cell = self.cells[k]
                assert isinstance(cell, _Cell)
                out, h, c = _run_direction(cell, layer_input, h0[k],
                                           None if c0 is None else c0[k], direction == 1, mask)
                outs.append(out)                                # (B, T, H)
                h_n.append(h)
                c_n.append(c)
            layer_input = torch.cat(outs, dim=-1)               # (B, T, D*H)
            if layer < self.num_layers - 1:
                layer_input = self.dropout(layer_input)
        h_stack = torch.stack(h_n)                              # (L*D, B, H)
        if self.kind == "lstm":
            return layer_input, (h_stack, torch.stack([c for c in c_n if c is not None]))
        return layer_input, h_stack

    def load_torch_weights(self, reference: nn.LSTM | nn.GRU) -> None:
        """Copy the weights of a torch.nn.LSTM/GRU with the same shape into this module."""
        with torch.no_grad():
            for layer in range(self.num_layers):
                for direction in range(self.directions):
                    suffix = f"l{layer}" + ("_reverse" if direction else "")
                    cell = self.cells[layer * self.directions + direction]
                    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                        getattr(cell, name).copy_(getattr(reference, f"{name}_{suffix}"))
