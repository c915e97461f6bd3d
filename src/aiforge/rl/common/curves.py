"""Learning-curve figures every RL recipe writes: episodic return against environment
steps and against wall-clock seconds, raw and smoothed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aiforge.core.plots import plt
from aiforge.rl.common.evaluation import EpisodeLog


def smooth(values: list[float], window: int) -> np.ndarray:
    """Trailing mean over up to `window` episodes (the 100-episode mean of gymnasium)."""
    arr = np.asarray(values, dtype=float)
    csum = np.concatenate([[0.0], np.cumsum(arr)])
    idx = np.arange(1, len(arr) + 1)
    lo = np.maximum(idx - window, 0)
    return (csum[idx] - csum[lo]) / (idx - lo)


def plot_learning_curves(logs: dict[str, EpisodeLog], path: Path, title: str,
                         target: float | None = None, window: int = 100) -> Path:
    """Two panels (return vs steps, return vs seconds), one line per named log."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, log in logs.items():
        if not log.returns:
            continue
        mean = smooth(log.returns, window)
        for ax, x in zip(axes, (log.steps, log.seconds), strict=True):
            line, = ax.plot(x, mean, label=f"{name} ({window}-episode mean)")
            ax.scatter(x, log.returns, s=2, alpha=0.15, color=line.get_color())
    for ax, xlabel in zip(axes, ("environment steps", "wall seconds"), strict=True):
        if target is not None:
            ax.axhline(target, color="grey", ls="--", lw=1, label=f"target {target:g}")
        ax.set(xlabel=xlabel, ylabel="episodic return")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
