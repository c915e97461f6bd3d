"""Step 1, instance segmentation: torchvision's Mask R-CNN on the shapes set.

Mask R-CNN (He et al. 2017) is Faster R-CNN with a third head: for every detected region it
predicts a small mask per class (RoIAlign keeps the region's pixels aligned, which masks need
more than boxes do), and the mask of the predicted class is pasted back into the image. The
model and training are in two_stage.py; this recipe trains it, keeps the weights with the
best validation mask mAP@0.5 and reports COCO mask and box mAP on the test split.
"""

from __future__ import annotations

import torch
from torch import nn

from aiforge.core import Bar, Recipe, RunContext, fit, register
from aiforge.core.plots import learning_curves
from aiforge.vision.detection import (
    cpu_latency_ms,
    detection_data,
    draw_detections,
    loss_curves,
    mean_average_precision,
)
from aiforge.vision.two_stage import (
    TwoStageConfig,
    build_two_stage,
    detect,
    loader,
    loss_ratio,
    training_loss,
)


class MaskRCNNConfig(TwoStageConfig):
    """Mask R-CNN settings (all fields shared with Faster R-CNN)."""


def build_model(cfg: MaskRCNNConfig) -> nn.Module:
    return build_two_stage(cfg, with_masks=True)


def train(cfg: MaskRCNNConfig, ctx: RunContext) -> dict[str, float]:
    splits = detection_data(cfg, with_masks=True)
    model = build_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    curves: dict[str, list[float]] = {}

    def evaluate(model: nn.Module) -> dict[str, float]:
        dets = detect(model, splits["val"])
        return {"val_mask_map50": mean_average_precision(splits["val"], dets, "segm")["map50"]}

    result = fit(model, loader(splits["train"], True, cfg.batch_size),
                 loss_fn=training_loss(cfg, curves), evaluate=evaluate, cfg=cfg, ctx=ctx,
                 optimizer=optimizer, monitor="val_mask_map50")
    model.eval()
    dets = detect(model, splits["test"])
    masks = mean_average_precision(splits["test"], dets, "segm")
    boxes = mean_average_precision(splits["test"], dets, "bbox")
    one = splits["test"][:1]
    latency = cpu_latency_ms(lambda: detect(model, one), repeats=10)
    learning_curves(result.history, ctx.figure_path("learning_curves.png"), "vision.segment-maskrcnn")
    if curves:
        loss_curves(curves, ctx.figure_path("loss_components.png"), "Mask R-CNN loss terms")
    draw_detections(splits["test"][:8], dets[:8], cfg.class_names, ctx.figure_path("test_predictions.png"),
                    "vision.segment-maskrcnn on test images (dashed: ground truth)", min_score=0.5)
    ctx.save_model(model, extra={"categories": list(cfg.class_names)})
    return {"test_mask_map50": masks["map50"], "test_mask_map": masks["map"],
            "test_box_map50": boxes["map50"], "test_box_map": boxes["map"],
            "val_mask_map50": result.best_value, "best_epoch": float(result.best_epoch),
            "latency_ms": latency, "train_loss_ratio": loss_ratio(curves.get("total", [1.0]))}


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
