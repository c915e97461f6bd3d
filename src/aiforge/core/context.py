"""What a running recipe gets besides its config: where to write, how to report."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_model

from aiforge.core.config import RecipeConfig
from aiforge.core.tracking import NullTracker, Tracker

MODEL_DIR = "model"
MODEL_META = "aiforge-model.json"


@dataclass
class RunContext:
    """Passed to `Recipe.train(cfg, ctx)`. Holds no global state: everything a recipe writes
    goes under `out`, everything it reports goes through `tracker`."""

    recipe: str
    out: Path
    config: RecipeConfig
    quick: bool = False
    quiet: bool = False
    resume: bool = False
    tracker: Tracker = field(default_factory=NullTracker)
    artifacts: list[str] = field(default_factory=list)

    @property
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoints"

    def figure_path(self, name: str) -> Path:
        """Where to save a figure; it is listed as an artifact and logged to tracking."""
        path = self.out / "figures" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        self.add_artifact(path)
        return path

    def add_artifact(self, path: Path) -> None:
        rel = str(path.relative_to(self.out))
        if rel not in self.artifacts:
            self.artifacts.append(rel)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.tracker.log_metrics(metrics, step)

    def save_model(self, model: torch.nn.Module, extra: dict[str, Any] | None = None) -> Path:
        """Save the trained model so that `aiforge.core.load_model` can rebuild it from the
        recipe's name, its resolved config and safetensors weights alone."""
        folder = self.out / MODEL_DIR
        folder.mkdir(parents=True, exist_ok=True)
        save_model(model, str(folder / "model.safetensors"))
        meta = {"recipe": self.recipe, "config": self.config.model_dump(mode="json"), **(extra or {})}
        (folder / MODEL_META).write_text(json.dumps(meta, indent=2) + "\n")
        self.add_artifact(folder)
        return folder
