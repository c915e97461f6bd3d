"""Step 1, instance segmentation: torchvision's Mask R-CNN on the shapes set.

Mask R-CNN (He et al. 2017) is Faster R-CNN with a third head: for every detected region it
predicts a small mask per class (RoIAlign keeps the region's pixels aligned, which masks need
more than boxes do), and the mask of the predicted class is pasted back into the image. The
model and training are in two_stage.py; this recipe trains it, keeps the weights with the
best validation mask mAP@0.5 and reports COCO mask and box mAP on the test split.
"""

from __future__ import annotations

from torch import nn

from aiforge.core import Bar, Recipe, RunContext, register
from aiforge.vision.two_stage import TwoStageConfig, build_two_stage, train_two_stage


class MaskRCNNConfig(TwoStageConfig):
    """Mask R-CNN settings (all fields shared with Faster R-CNN)."""


def build_model(cfg: MaskRCNNConfig) -> nn.Module:
    return build_two_stage(cfg, with_masks=True)


def train(cfg: MaskRCNNConfig, ctx: RunContext) -> dict[str, float]:
    return train_two_stage(cfg, ctx, with_masks=True, model_name="Mask R-CNN")


RECIPE = register(Recipe(
    name="vision.segment-maskrcnn",
    step="1",
    topic="CNNs: instance segmentation",
    summary="torchvision's Mask R-CNN on a ResNet-18 FPN backbone (from scratch), on procedural shapes.",
    config=MaskRCNNConfig,
    train=train,
    bar=Bar("test_mask_map50", ">=", 0.85),
    quick_bar=Bar("train_loss_ratio", "<=", 0.6),
    budget_s=1200,
    quick={"epochs": 2, "n_train": 80, "n_val": 24, "n_test": 100, "batch_size": 4,
           "input_size": 64, "lr": 4e-3},
    build_model=build_model,
))
