"""The adding problem (Hochreiter and Schmidhuber, 1997, experiment 4), generated here.

Each sequence has `length` steps of two channels: a random value in [0, 1) and a marker that
is 1 at exactly two steps, one in each half of the sequence, and 0 elsewhere. The target is
the sum of the two marked values. Predicting the mean (1.0) scores the variance of a sum of
two U(0, 1) values, 2/12 = 0.1667 MSE; getting far below that needs memory across the whole
sequence, which is what the problem tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MEAN_PREDICTOR_MSE = 1.0 / 6.0

# The splits are part of the data set, not of a run: they never follow --seed.
SPLIT_SEEDS = {"train": 1001, "val": 1002, "test": 1003}


@dataclass(frozen=True)
class AddingSet:
    x: torch.Tensor  # (N, T, 2) float32: value, marker
    y: torch.Tensor  # (N,) float32: sum of the two marked values


def adding_problem(n: int, length: int, seed: int) -> AddingSet:
    """`n` sequences of `length` steps, the same for the same arguments."""
    if length < 2:
        raise ValueError(f"the adding problem needs length >= 2, got {length}")
    gen = torch.Generator().manual_seed(seed)
    values = torch.rand(n, length, generator=gen)                          # (N, T)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=gen)                    # (N,) in [0, T/2)
    second = torch.randint(half, length, (n,), generator=gen)              # (N,) in [T/2, T)
    markers = torch.zeros(n, length)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]                         # (N,)
    return AddingSet(torch.stack([values, markers], dim=-1), y)


def adding_splits(length: int, n_train: int, n_val: int, n_test: int) -> dict[str, AddingSet]:
    """{'train', 'val', 'test'} with fixed seeds."""
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    return {name: adding_problem(sizes[name], length, SPLIT_SEEDS[name]) for name in sizes}
