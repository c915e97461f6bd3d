"""Step 1, object detection: torchvision's Faster R-CNN (two stages) on the shapes set.

The model and its training live in two_stage.py (shared with Mask R-CNN); this file is the
recipe: train with core.fit, keep the weights with the best validation mAP@0.5, report COCO
mAP on the test split, draw predictions and the loss terms (RPN objectness and box, RoI
classifier and box).
"""

from __future__ import annotations

from torch import nn

from aiforge.core import Bar, Recipe, RunContext, register
from aiforge.vision.two_stage import TwoStageConfig, build_two_stage, train_two_stage


class FasterRCNNConfig(TwoStageConfig):
    """Faster R-CNN settings (all fields shared with Mask R-CNN)."""


def build_model(cfg: FasterRCNNConfig) -> nn.Module:
    return build_two_stage(cfg, with_masks=False)


def train(cfg: FasterRCNNConfig, ctx: RunContext) -> dict[str, float]:
    return train_two_stage(cfg, ctx, with_masks=False, model_name="Faster R-CNN")


RECIPE = register(Recipe(
    name="vision.detect-frcnn",
    step="1",
    topic="CNNs: object detection",
    summary="torchvision's Faster R-CNN on a ResNet-18 FPN backbone (from scratch), on procedural shapes.",
    config=FasterRCNNConfig,
    train=train,
    bar=Bar("test_map50", ">=", 0.85),
    quick_bar=Bar("train_loss_ratio", "<=", 0.6),
    budget_s=1200,
    quick={"epochs": 2, "n_train": 120, "n_val": 24, "n_test": 100, "batch_size": 4,
           "input_size": 64, "lr": 4e-3},
    build_model=build_model,
))
