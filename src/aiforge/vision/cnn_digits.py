"""Step 1, CNNs: a small convolutional network on scikit-learn's handwritten digits.

The first recipe of the roadmap and the reference user of `core.fit`: two conv blocks
(conv-BN-ReLU twice, then max-pool), global average pooling and a linear classifier,
trained with AdamW, a cosine schedule and random one-pixel shifts as augmentation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from aiforge.core import Bar, Recipe, RunContext, SupervisedConfig, fit, register
from aiforge.core.plots import learning_curves
from aiforge.data.digits import digits_splits
from aiforge.vision.digits_predictor import digits_predictor


class DigitsCNNConfig(SupervisedConfig):
    epochs: int = Field(60, ge=1)
    """Number of passes over the training set."""
    lr: float = Field(3e-3, gt=0, le=10)
    """Peak learning rate."""
    weight_decay: float = Field(5e-4, ge=0)
    """Decoupled weight decay (AdamW)."""
    width: int = Field(48, ge=4, le=256)
    """Channels of the first conv block; the second has twice as many."""
    dropout: float = Field(0.2, ge=0, lt=1)
    """Dropout before the classifier."""
    shift: int = Field(1, ge=0, le=3)
    """Augmentation: random translation of up to this many pixels; 0 turns it off."""


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
        nn.MaxPool2d(2),
    )


class DigitsCNN(nn.Module):
    def __init__(self, width: int = 48, dropout: float = 0.2, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(conv_block(1, width), conv_block(width, 2 * width))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * width * 4, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)                            # (B, 2w, 2, 2)
        return self.head(h)                             # (B, classes)


def build_model(cfg: DigitsCNNConfig) -> DigitsCNN:
    return DigitsCNN(cfg.width, cfg.dropout)


def random_shift(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Translate each image by up to `max_shift` pixels (zero fill), one offset per image."""
    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, [max_shift] * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b)).tolist()
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    device = next(model.parameters()).device
    pred = model(x.to(device)).argmax(1).cpu()
    return float((pred == y).float().mean())


def train(cfg: DigitsCNNConfig, ctx: RunContext) -> dict[str, float]:
    splits = digits_splits()
    train_set = TensorDataset(splits["train"].x, splits["train"].y)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True)
    model = build_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(model(random_shift(x, cfg.shift)), y)

    def evaluate(model: nn.Module) -> dict[str, float]:
        return {"val_accuracy": accuracy(model, splits["val"].x, splits["val"].y)}

    result = fit(model, loader, loss_fn=loss_fn, evaluate=evaluate, cfg=cfg, ctx=ctx,
                 optimizer=optimizer, monitor="val_accuracy")
    model.eval()
    learning_curves(result.history, ctx.figure_path("learning_curves.png"), "vision.cnn-digits")
    ctx.save_model(model)
    return {
        "test_accuracy": accuracy(model, splits["test"].x, splits["test"].y),
        "val_accuracy": result.best_value,
        "best_epoch": float(result.best_epoch),
        "epochs_run": float(len(result.history)),
    }


RECIPE = register(Recipe(
    name="vision.cnn-digits",
    step="1",
    topic="CNNs",
    summary="A small CNN on scikit-learn's 8x8 handwritten digits (stratified split).",
    config=DigitsCNNConfig,
    train=train,
    bar=Bar("test_accuracy", ">=", 0.985),
    quick_bar=Bar("test_accuracy", ">=", 0.93),
    budget_s=120,
    quick={"epochs": 6, "width": 16},
    build_model=build_model,
    predictor=digits_predictor,
))
