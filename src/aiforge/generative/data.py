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
    """(N, C, H, W) in [0, 1], C = 1 or 3 -> one (rows*(H+1)-1, nrow*(W+1)-1) grey array, or
    the same with a last axis of 3 for colour, with 1-pixel gaps between the images."""
    n, c, h, w = images.shape
    rows = (n + nrow - 1) // nrow
    shape = (rows * (h + 1) - 1, nrow * (w + 1) - 1) + ((3,) if c == 3 else ())
    grid = (0.25 if c == 1 else 1.0) * np.ones(shape, dtype=np.float32)  # light gaps
    for i, img in enumerate(images.detach().clamp(0, 1).cpu().numpy()):
        r, col = divmod(i, nrow)
        tile = img[0] if c == 1 else img.transpose(1, 2, 0)                 # (H, W) or (H, W, 3)
        grid[r * (h + 1):r * (h + 1) + h, col * (w + 1):col * (w + 1) + w] = tile
    return grid


def save_grid(images: torch.Tensor, path: Path, nrow: int = 10, title: str = "") -> Path:
    """Write a grid of images as a PNG: grey ones as dark ink on white, colour as they are."""
    grid = image_grid(images, nrow)
    side = images.shape[-1]
    inch = 0.45 * max(1.0, side / 16)  # bigger tiles for bigger images
    fig, ax = plt.subplots(figsize=(inch * nrow + 0.5, inch * grid.shape[0] / (side + 1) + 0.7))
    if grid.ndim == 2:
        ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def class_rows(images: torch.Tensor, labels: torch.Tensor, classes: int, per_row: int = 10) -> torch.Tensor:
    """The first `per_row` images of each class in turn, for a grid with one class per row
    (classes past the tenth are left out of the figure)."""
    rows = [images[labels == c][:per_row] for c in range(min(classes, 10))]
    return torch.cat(rows)
