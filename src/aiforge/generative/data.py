"""Data helpers shared by the generative recipes: the digits at their native 8x8 size, the
dequantisation that turns their 17 grey levels into a continuous density problem, the two
halves of the test set used as the evaluation's floor, and image grids for figures.

The digits are stored as counts k in {0, ..., 16} (``aiforge.data.digits`` gives k / 16).
A density model must not put infinite density on 17 points, so likelihoods here are always
of *dequantised* images (Uria et al., 2013; Theis et al., 2016, section 3.1):

    x = (k + u) / 17,   u ~ U(0, 1) per pixel,   so x lies in [0, 1]^64.

A continuous density p on that scale bounds the discrete model (Jensen's inequality):
-log P(k) <= E_u[-log p(x)] + 64 log 17 nats. Every likelihood in step 3 is
reported on this one scale (nats per image), which is what makes the VAE's ELBO and the
probabilistic PCA log-likelihood comparable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from aiforge.core.plots import plt
from aiforge.data.digits import DigitsSplit, digits_splits

LEVELS = 17  # grey levels of scikit-learn's digits: 0..16
DEQUANT_SEED = 4321  # the test set's dequantisation noise is part of the data, not of a run


def levels(x: torch.Tensor) -> torch.Tensor:
    """Integer grey levels k in {0..16} of images stored as k / 16."""
    return torch.round(x * (LEVELS - 1))


def dequantize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(k + u) / 17 with u ~ U(0, 1): a continuous image in [0, 1] for likelihoods."""
    u = torch.rand(x.shape, generator=generator)
    return (levels(x) + u) / LEVELS


def dequantized_test(split: DigitsSplit) -> torch.Tensor:
    """The test images dequantised with fixed noise, so every model is scored on the same x."""
    return dequantize(split.x, torch.Generator().manual_seed(DEQUANT_SEED))


def real_test_halves() -> tuple[DigitsSplit, DigitsSplit]:
    """The test split cut into two stratified halves A and B (every other image of each
    class). B is the reference set of digits-FD; A scored against B is the floor."""
    test = digits_splits()["test"]
    first = torch.zeros(len(test.y), dtype=torch.bool)
    for c in range(10):
        idx = torch.nonzero(test.y == c).flatten()
        first[idx[::2]] = True
    return DigitsSplit(test.x[first], test.y[first]), DigitsSplit(test.x[~first], test.y[~first])


def image_grid(images: torch.Tensor, nrow: int) -> np.ndarray:
    """(N, 1, H, W) in [0, 1] -> one (rows*(H+1)-1, nrow*(W+1)-1) array with light grey
    1-pixel gaps between the images."""
    n, _, h, w = images.shape
    rows = (n + nrow - 1) // nrow
    grid = 0.25 * np.ones((rows * (h + 1) - 1, nrow * (w + 1) - 1), dtype=np.float32)
    for i, img in enumerate(images.detach().clamp(0, 1).cpu().numpy()):
        r, c = divmod(i, nrow)
        grid[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = img[0]
    return grid


def save_grid(images: torch.Tensor, path: Path, nrow: int = 10, title: str = "") -> Path:
    """Write a grid of grey images (dark ink on white) as a PNG."""
    grid = image_grid(images, nrow)
    fig, ax = plt.subplots(figsize=(0.45 * nrow + 0.5, 0.45 * grid.shape[0] / 9 + 0.7))
    ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
