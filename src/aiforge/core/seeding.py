"""One place where every random number generator is seeded, and RNG state is captured."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, threads: int = 1) -> None:
    """Seed python, numpy and torch, and fix torch's thread count.

    The thread count is part of determinism on a CPU: reductions split over a different
    number of threads add in a different order.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
        # On a GPU, cuDNN's autotuner and atomic-add kernels change the numbers from run to
        # run; a resumed run can only equal an uninterrupted one with deterministic kernels.
        # cuBLAS reads its workspace setting when it starts, so this must precede its first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, plain JSON) that together restore every global RNG."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{i}"] = state
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    plain = {
        "numpy": [kind, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [py_version, list(py_state), py_gauss],
    }
    return tensors, plain


def set_rng_state(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    if torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in sorted(tensors) if k.startswith("cuda")])
    kind, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    py_version, py_state, py_gauss = plain["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
