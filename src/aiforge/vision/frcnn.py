"""Step 1, object detection: torchvision's Faster R-CNN (two stages) on the shapes set.

The model and its training live in two_stage.py (shared with Mask R-CNN); this file is the
recipe: train with core.fit, keep the weights with the best validation mAP@0.5, report COCO
mAP on the test split, draw predictions and the loss terms (RPN objectness and box, RoI
classifier and box).
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


class FasterRCNNConfig(TwoStageConfig):
    """Faster R-CNN settings (all fields shared with Mask R-CNN)."""


def build_model(cfg: FasterRCNNConfig) -> nn.Module:
    return build_two_stage(cfg, with_masks=False)


def train(cfg: FasterRCNNConfig, ctx: RunContext) -> dict[str, float]:
    splits = detection_data(cfg, with_masks=False)
    model = build_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    curves: dict[str, list[float]] = {}

    def evaluate(model: nn.Module) -> dict[str, float]:
        return {"val_map50": mean_average_precision(splits["val"], detect(model, splits["val"]))["map50"]}

    result = fit(model, loader(splits["train"], False, cfg.batch_size),
                 loss_fn=training_loss(cfg, curves), evaluate=evaluate, cfg=cfg, ctx=ctx,
                 optimizer=optimizer, monitor="val_map50")
    model.eval()
    dets = detect(model, splits["test"])
    test = mean_average_precision(splits["test"], dets)
    one = splits["test"][:1]
    latency = cpu_latency_ms(lambda: detect(model, one), repeats=10)
    learning_curves(result.history, ctx.figure_path("learning_curves.png"), "vision.detect-frcnn")
    if curves:
        loss_curves(curves, ctx.figure_path("loss_components.png"), "Faster R-CNN loss terms")
    draw_detections(splits["test"][:8], dets[:8], cfg.class_names, ctx.figure_path("test_predictions.png"),
                    "vision.detect-frcnn on test images (dashed: ground truth)")
    ctx.save_model(model, extra={"categories": list(cfg.class_names)})
    return {"test_map50": test["map50"], "test_map": test["map"], "test_map75": test["map75"],
            "val_map50": result.best_value, "best_epoch": float(result.best_epoch),
            "latency_ms": latency, "train_loss_ratio": loss_ratio(curves.get("total", [1.0]))}


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
