"""scikit-learn's handwritten digits (1,797 8x8 images that ship with the package) with a
fixed stratified train/val/test split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SPLIT_SEED = 1234  # the split is part of the data set, not of a run: it never follows --seed


@dataclass(frozen=True)
class DigitsSplit:
    x: torch.Tensor  # (N, 1, 8, 8) float32 in [0, 1]
    y: torch.Tensor  # (N,) int64 labels 0..9


def digits_splits(val: float = 0.15, test: float = 0.2) -> dict[str, DigitsSplit]:
    """{'train', 'val', 'test'}, stratified by label, the same on every call."""
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    y = data.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test, stratify=y, random_state=SPLIT_SEED)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val / (1 - test), stratify=y_rest, random_state=SPLIT_SEED)
    return {name: DigitsSplit(torch.from_numpy(a), torch.from_numpy(b))
            for name, a, b in (("train", x_train, y_train), ("val", x_val, y_val),
                               ("test", x_test, y_test))}
