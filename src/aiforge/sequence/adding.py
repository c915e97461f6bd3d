"""Step 1, RNNs: our hand-written LSTM and GRU on the adding problem at length 100.

The network reads the whole sequence (value, marker) step by step and a linear head maps
the last hidden state to the predicted sum. The only way below the mean predictor's 0.167
MSE is to notice the two marked steps, up to 99 steps apart, and carry their values to the
end: the long-range memory the LSTM's additive cell was designed for (Hochreiter and
Schmidhuber, 1997). Two recipes share this file: `sequence.lstm` and `sequence.gru`.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from aiforge.core import Bar, Recipe, RunContext, SupervisedConfig, fit, register
from aiforge.core.plots import learning_curves
from aiforge.data.adding import MEAN_PREDICTOR_MSE, AddingSet, adding_splits
from aiforge.sequence.rnn import RNN, LSTMCell


class AddingConfig(SupervisedConfig):
    cell: Literal["lstm", "gru"] = "lstm"
    """Recurrent cell: 'lstm' or 'gru' (both written out in aiforge.sequence.rnn)."""
    length: int = Field(100, ge=2, le=10_000)
    """Sequence length T; the two marked steps fall one in each half."""
    hidden: int = Field(64, ge=1, le=4096)
    """Hidden units per layer."""
    layers: int = Field(1, ge=1, le=8)
    """Stacked recurrent layers."""
    forget_bias: float = 1.0
    """Initial forget-gate bias of the LSTM (Gers et al., 2000; Jozefowicz et al., 2015):
    starting near 'remember' lets gradients reach early steps. Ignored by the GRU."""
    n_train: int = Field(20_000, ge=1)
    """Training sequences (a fixed generated set)."""
    n_val: int = Field(1_000, ge=1)
    """Validation sequences: the best epoch by validation MSE is kept."""
    n_test: int = Field(2_000, ge=1)
    """Test sequences, reported once at the end."""
    epochs: int = Field(10, ge=1)
    """Number of passes over the training set."""
    batch_size: int = Field(50, ge=1)
    """Sequences per optimisation step."""
    lr: float = Field(1e-2, gt=0, le=10)
    """Peak learning rate (Adam)."""
    grad_clip: float | None = Field(1.0, gt=0)
    """Clip the global gradient norm: a recurrent net's gradients can spike."""
    eval_batch: int = Field(1_000, ge=1)
    """Sequences per forward pass at evaluation."""


class AddingRNN(nn.Module):
    """RNN over (value, marker) steps, then a linear read-out of the last hidden state."""

    def __init__(self, cfg: AddingConfig) -> None:
        super().__init__()
        self.rnn = RNN(cfg.cell, input_size=2, hidden_size=cfg.hidden, num_layers=cfg.layers)
        self.head = nn.Linear(cfg.hidden, 1)
        if cfg.cell == "lstm":
            for cell in self.rnn.cells:
                assert isinstance(cell, LSTMCell)
                with torch.no_grad():  # gates are stacked i, f, g, o: f is the second block
                    cell.bias_hh[cfg.hidden:2 * cfg.hidden].fill_(cfg.forget_bias)
                    cell.bias_ih[cfg.hidden:2 * cfg.hidden].zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)                                    # (B, T, H)
        return self.head(out[:, -1]).squeeze(-1)                # (B,)


def build_model(cfg: AddingConfig) -> AddingRNN:
    return AddingRNN(cfg)


@torch.no_grad()
def mse(model: nn.Module, data: AddingSet, batch: int) -> float:
    device = next(model.parameters()).device
    total = 0.0
    for start in range(0, len(data.y), batch):
        x, y = data.x[start:start + batch].to(device), data.y[start:start + batch].to(device)
        total += float(F.mse_loss(model(x), y, reduction="sum"))
    return total / len(data.y)


def train(cfg: AddingConfig, ctx: RunContext) -> dict[str, float]:
    splits = adding_splits(cfg.length, cfg.n_train, cfg.n_val, cfg.n_test)
    loader = DataLoader(TensorDataset(splits["train"].x, splits["train"].y),
                        batch_size=cfg.batch_size, shuffle=True)
    model = build_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return F.mse_loss(model(x), y)

    def evaluate(model: nn.Module) -> dict[str, float]:
        return {"val_mse": mse(model, splits["val"], cfg.eval_batch)}

    result = fit(model, loader, loss_fn=loss_fn, evaluate=evaluate, cfg=cfg, ctx=ctx,
                 optimizer=optimizer, monitor="val_mse", mode="min")
    model.eval()
    learning_curves(result.history, ctx.figure_path("learning_curves.png"), ctx.recipe)
    ctx.save_model(model)
    return {
        "test_mse": mse(model, splits["test"], cfg.eval_batch),
        "val_mse": result.best_value,
        "mean_predictor_mse": MEAN_PREDICTOR_MSE,
        "best_epoch": float(result.best_epoch),
        "epochs_run": float(len(result.history)),
    }


class LSTMAddingConfig(AddingConfig):
    cell: Literal["lstm"] = "lstm"
    """Recurrent cell: the LSTM of aiforge.sequence.rnn."""


class GRUAddingConfig(AddingConfig):
    cell: Literal["gru"] = "gru"
    """Recurrent cell: the GRU of aiforge.sequence.rnn."""


# Quick setting: length 20 instead of 100 (the same task, less distance to bridge) and fewer of them,
# so that it finishes in about 20 s; the mean predictor scores 0.167 at every length.
QUICK = {"length": 20, "n_train": 8_000, "n_val": 500, "n_test": 1_000, "epochs": 4}

for _name, _config, _summary in (
    ("sequence.lstm", LSTMAddingConfig, "Hand-written LSTM on the adding problem, T=100."),
    ("sequence.gru", GRUAddingConfig, "Hand-written GRU on the adding problem, T=100."),
):
    register(Recipe(
        name=_name, step="1", topic="RNNs", summary=_summary, config=_config, train=train,
        bar=Bar("test_mse", "<", 0.01), quick_bar=Bar("test_mse", "<", 0.05),
        budget_s=600, quick=QUICK, build_model=build_model,
    ))
