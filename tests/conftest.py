"""Test-wide settings: offline hub, one torch thread, tracking into a temporary store."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest
import torch

# Numbers that tests compare must not depend on how many cores the machine has: a reduction
# split over two threads adds in another order than over one (recipes set this themselves).
torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _isolated_tracking(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test tracks into the session's own SQLite store, never the user's runs/."""
    store = tmp_path_factory.mktemp("mlflow")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
