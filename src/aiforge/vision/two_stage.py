"""What Faster R-CNN and Mask R-CNN share: a light ResNet-18 + FPN backbone sized for small
images, the torchvision model around it, and training with core.fit on the shapes set.

Faster R-CNN (Ren et al. 2015) proposes regions with a small network sliding over the
features (the RPN), pools each proposal to a fixed size (RoIAlign, He et al. 2017) and
classifies and refines it in a second stage. Mask R-CNN adds a third head that predicts a
28x28 mask per region. torchvision implements both; what we choose here is the scale:

- ResNet-18 (BatchNorm trained, not frozen, since we start from scratch) to stride 16, with
  a 64-channel FPN (Lin et al. 2017) instead of 256 channels;
- anchors of 16 to 128 pixels at the resized input (the defaults, 32 to 512, fit COCO photos
  of 800 pixels, not 64-pixel shapes), and fewer proposals and sampled RoIs per image;
- a 256-wide box head instead of 1024, and a two-layer mask head instead of four.

`weights=PATH` loads a torchvision ResNet-18 state dict (for example ImageNet weights a user
has) into the backbone; nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from pydantic import Field, field_validator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from aiforge.core import RunContext, fit
from aiforge.core.plots import learning_curves
from aiforge.data.shapes import Sample
from aiforge.vision.detection import (
    DetectionDataConfig,
    Detections,
    cpu_latency_ms,
    detection_data,
    draw_detections,
    load_weights_file,
    loss_curves,
    mean_average_precision,
)


class TwoStageConfig(DetectionDataConfig):
    epochs: int = Field(5, ge=1)
    """Number of passes over the training set."""
    batch_size: int = Field(8, ge=1)
    """Images per optimisation step."""
    lr: float = Field(2e-3, gt=0, le=10)
    """Peak learning rate (AdamW)."""
    weight_decay: float = Field(1e-4, ge=0)
    """Decoupled weight decay (AdamW)."""
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    """Fraction of all steps spent warming the learning rate up linearly."""
    grad_clip: float | None = Field(10.0, gt=0)
    """Clip the global gradient norm to this value; None turns clipping off."""
    input_size: int = Field(128, ge=32, le=1024)
    """Images are resized to this many pixels a side inside the model (min_size = max_size)."""
    fpn_channels: int = Field(64, ge=8, le=256)
    """Channels of every FPN level and of the mask head."""
    weights: str | None = None
    """Path of a torchvision ResNet-18 state dict (.pth or .safetensors) to start the backbone
    from; None trains from scratch."""
    flip: bool = True
    """Augment with random left-right flips."""

    @field_validator("weights")
    @classmethod
    def _weights_exist(cls, path: str | None) -> str | None:
        if path is not None and not Path(path).is_file():
            raise ValueError(f"weights file not found: {path}")
        return path


def build_two_stage(cfg: TwoStageConfig, with_masks: bool) -> nn.Module:
    """Faster R-CNN (with_masks=False) or Mask R-CNN on a ResNet-18 FPN backbone."""
    from torchvision.models import resnet18
    from torchvision.models.detection import FasterRCNN, MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    c = cfg.fpn_channels
    body = resnet18(weights=None, norm_layer=nn.BatchNorm2d)
    backbone = BackboneWithFPN(body, {"layer1": "0", "layer2": "1", "layer3": "2"},
                               in_channels_list=[64, 128, 256], out_channels=c)
    # four levels (strides 4, 8, 16 and the FPN's extra max-pool at 32), one anchor size each
    anchors = AnchorGenerator(sizes=((16,), (32,), (64,), (128,)), aspect_ratios=((0.5, 1.0, 2.0),) * 4)
    levels = ["0", "1", "2"]
    # The predictors hold the class count: the classes + background (label 0 in torchvision).
    common = dict(
        min_size=cfg.input_size, max_size=cfg.input_size, rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100, rpn_batch_size_per_image=128,
        box_roi_pool=MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(c * 7 * 7, 256), box_predictor=FastRCNNPredictor(256, len(cfg.class_names) + 1),
        box_batch_size_per_image=64, box_score_thresh=0.05, box_detections_per_img=30,
    )
    if with_masks:
        model: nn.Module = MaskRCNN(
            backbone, **common,
            mask_roi_pool=MultiScaleRoIAlign(levels, output_size=14, sampling_ratio=2),
            mask_head=MaskRCNNHeads(c, [c, c], 1),
            mask_predictor=MaskRCNNPredictor(c, c, len(cfg.class_names) + 1))
    else:
        model = FasterRCNN(backbone, **common)
    if cfg.weights is not None:
        load_weights_file(model, cfg.weights, prefix="backbone.body.")
    return model


# --- data ------------------------------------------------------------------------------------

class ShapesTargets(Dataset):
    """Samples as torchvision detection inputs: image (3, H, W) in [0, 1] and a target with
    boxes (K, 4), labels (K,) counted from 1 (0 is background) and masks (K, H, W) uint8."""

    def __init__(self, samples: Sequence[Sample], with_masks: bool) -> None:
        self.samples, self.with_masks = samples, with_masks

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.samples[i]
        image = torch.from_numpy(s.image).permute(2, 0, 1).float().div(255)
        target = {"boxes": torch.from_numpy(s.boxes), "labels": torch.from_numpy(s.labels) + 1}
        if self.with_masks:
            target["masks"] = torch.from_numpy(s.masks).to(torch.uint8)
        return image, target


def collate(batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[list, list]:
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)


def loader(samples: Sequence[Sample], with_masks: bool, batch_size: int) -> DataLoader:
    return DataLoader(ShapesTargets(samples, with_masks), batch_size=batch_size, shuffle=True,
                      collate_fn=collate, drop_last=len(samples) > batch_size)


def hflip(images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> None:
    """Flip each image left-right with probability 1/2, in place, with its boxes and masks."""
    for i, (image, target) in enumerate(zip(images, targets, strict=True)):
        if torch.rand(()) < 0.5:
            width = image.shape[-1]
            images[i] = image.flip(-1)
            boxes = target["boxes"].clone()
            boxes[:, 0], boxes[:, 2] = width - target["boxes"][:, 2], width - target["boxes"][:, 0]
            target["boxes"] = boxes
            if "masks" in target:
                target["masks"] = target["masks"].flip(-1)


def training_loss(cfg: TwoStageConfig, curves: dict[str, list[float]]):
    """The loss function for core.fit: torchvision's summed losses, each term recorded."""

    def loss_fn(model: nn.Module, batch: tuple[list, list]) -> torch.Tensor:
        images, targets = list(batch[0]), [dict(t) for t in batch[1]]
        if cfg.flip:
            hflip(images, targets)
        losses = model(images, targets)
        total: torch.Tensor = sum(losses.values())  # type: ignore[assignment]
        for name, value in [*losses.items(), ("total", total)]:
            curves.setdefault(name.removeprefix("loss_"), []).append(float(value.detach()))
        return total

    return loss_fn


def loss_ratio(totals: Sequence[float], window: int = 10) -> float:
    """Mean loss of the last `window` steps over that of the first: below 1 when it learns.
    The quick settings' bar: two-stage detectors from scratch need a few hundred steps
    before their mAP means much, which a 20-second run cannot give them."""
    k = max(1, min(window, len(totals) // 2))
    return sum(totals[-k:]) / k / (sum(totals[:k]) / k)


@torch.no_grad()
def detect(model: nn.Module, samples: Sequence[Sample], batch_size: int = 16,
           mask_threshold: float = 0.5) -> list[Detections]:
    """Predictions for samples (eval mode), labels back to 0-based, masks binarised."""
    model.eval()
    device = next(model.parameters()).device
    out: list[Detections] = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        images = [torch.from_numpy(s.image).permute(2, 0, 1).float().div(255).to(device)
                  for s in chunk]
        for pred in model(images):
            masks = pred.get("masks")
            out.append(Detections(
                pred["boxes"].cpu(), pred["scores"].cpu(), pred["labels"].cpu() - 1,
                None if masks is None else (masks[:, 0] > mask_threshold).cpu()))
    return out


def train_two_stage(cfg: TwoStageConfig, ctx: RunContext, *, with_masks: bool, model_name: str
                    ) -> dict[str, float]:
    """Train with core.fit, keep the weights with the best validation mAP@0.5 (of masks for
    Mask R-CNN, of boxes for Faster R-CNN), report COCO mAP on the test split, draw the
    predictions and the loss terms (RPN objectness and box, RoI classifier and box, mask)."""
    splits = detection_data(cfg, with_masks=with_masks)
    model = build_two_stage(cfg, with_masks)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    curves: dict[str, list[float]] = {}
    # the metric names the recipes have always reported: mask metrics carry "mask" in them
    kind, monitor = ("segm", "val_mask_map50") if with_masks else ("bbox", "val_map50")

    def evaluate(model: nn.Module) -> dict[str, float]:
        return {monitor: mean_average_precision(splits["val"], detect(model, splits["val"]), kind)["map50"]}

    result = fit(model, loader(splits["train"], with_masks, cfg.batch_size),
                 loss_fn=training_loss(cfg, curves), evaluate=evaluate, cfg=cfg, ctx=ctx,
                 optimizer=optimizer, monitor=monitor)
    model.eval()
    dets = detect(model, splits["test"])
    boxes = mean_average_precision(splits["test"], dets, "bbox")
    one = splits["test"][:1]
    latency = cpu_latency_ms(lambda: detect(model, one), repeats=10)
    learning_curves(result.history, ctx.figure_path("learning_curves.png"), ctx.recipe)
    if curves:
        loss_curves(curves, ctx.figure_path("loss_components.png"), f"{model_name} loss terms")
    draw_detections(splits["test"][:8], dets[:8], cfg.class_names, ctx.figure_path("test_predictions.png"),
                    f"{ctx.recipe} on test images (dashed: ground truth)",
                    min_score=0.5 if with_masks else 0.3)
    ctx.save_model(model, extra={"categories": list(cfg.class_names)})
    if with_masks:
        masks = mean_average_precision(splits["test"], dets, "segm")
        test = {"test_mask_map50": masks["map50"], "test_mask_map": masks["map"],
                "test_box_map50": boxes["map50"], "test_box_map": boxes["map"]}
    else:
        test = {"test_map50": boxes["map50"], "test_map": boxes["map"], "test_map75": boxes["map75"]}
    return {**test, monitor: result.best_value, "best_epoch": float(result.best_epoch),
            "latency_ms": latency, "train_loss_ratio": loss_ratio(curves.get("total", [1.0]))}
