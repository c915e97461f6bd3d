"""Figures every area uses: learning curves and bar charts (matplotlib, no display)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def learning_curves(history: Sequence[dict[str, float]], path: Path, title: str = "") -> Path:
    """One panel for the training loss, one for every other metric logged per epoch."""
    epochs = [row["epoch"] for row in history]
    other = [k for k in history[0] if k not in ("epoch", "train_loss", "lr", "seconds")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].plot(epochs, [row["train_loss"] for row in history], marker="o", ms=3)
    axes[0].set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss")
    for key in other:
        axes[1].plot(epochs, [row[key] for row in history], marker="o", ms=3, label=key)
    axes[1].set(xlabel="epoch", title="evaluation")
    if other:
        axes[1].legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bar_chart(values: dict[str, float], path: Path, ylabel: str, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bars = ax.bar(list(values), list(values.values()), color="#4c72b0")
    ax.bar_label(bars, fmt="%.3f")
    ax.set(ylabel=ylabel, title=title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
