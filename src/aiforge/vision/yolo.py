"""Step 1, object detection: a one-stage YOLO-style detector, written here, on the shapes set.

One network looks at the image once and predicts, for every cell of a grid and each of its
anchor boxes, a box, an objectness logit and class logits (Redmon et al. 2016, "You Only
Look Once"; anchors from YOLOv2, Redmon & Farhadi 2017). Reading top to bottom:

1. box overlap measures: IoU, GIoU (Rezatofighi et al. 2019) and CIoU (Zheng et al. 2020);
2. the network: a small conv backbone (stride 2, 4, 8, 16) and a top-down feature pyramid
   (Lin et al. 2017) that brings context back to one stride-4 grid, and a 1x1 head;
3. decoding raw outputs to boxes (YOLOv4/v5's bounded parametrisation);
4. target assignment and the loss: CIoU for boxes, BCE for objectness, CE for classes;
5. post-processing: score threshold and class-wise NMS (torchvision.ops.batched_nms);
6. the recipe: training with core.fit, COCO mAP on the test split, figures.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from aiforge.core import Bar, Recipe, RunContext, fit, register
from aiforge.core.plots import learning_curves
from aiforge.data.shapes import CLASSES, Sample, image_tensor, padded_targets
from aiforge.vision.detection import (
    DetectionDataConfig,
    Detections,
    cpu_latency_ms,
    detection_data,
    draw_detections,
    loss_curves,
    mean_average_precision,
    resize_samples,
)

# Anchor (w, h) in pixels at a 64-pixel input: they span the generator's object sizes.
ANCHORS_64 = ((10.0, 10.0), (17.0, 17.0), (26.0, 26.0))
STRIDE = 4


# --- 1. box overlap -------------------------------------------------------------------------

def box_iou_terms(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(IoU, union) of paired boxes a[i], b[i]; a, b (N, 4) as x1, y1, x2, y2."""
    inter_wh = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp(min=0)
    inter = inter_wh[:, 0] * inter_wh[:, 1]                             # (N,)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a + area_b - inter
    return inter / (union + 1e-7), union


def generalized_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GIoU = IoU - |C \\ (A ∪ B)| / |C|, C the smallest box enclosing both (Rezatofighi
    et al. 2019, Alg. 1). Unlike IoU it still has a gradient when the boxes do not overlap."""
    iou, union = box_iou_terms(a, b)
    hull_wh = torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])
    hull = hull_wh[:, 0] * hull_wh[:, 1] + 1e-7
    return iou - (hull - union) / hull


def complete_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """CIoU = IoU - ρ²(centres) / c² - α v (Zheng et al. 2020, eq. 8-11): penalises the
    centre distance (normalised by the enclosing box's diagonal c) and the aspect-ratio
    mismatch v, weighted by α = v / (1 - IoU + v)."""
    iou, _ = box_iou_terms(a, b)
    hull_wh = torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])
    diag2 = (hull_wh**2).sum(1) + 1e-7                                  # c²
    centre2 = (((a[:, :2] + a[:, 2:]) - (b[:, :2] + b[:, 2:])) ** 2).sum(1) / 4  # ρ²
    wa, ha = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    wb, hb = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    v = (4 / math.pi**2) * (torch.atan(wb / (hb + 1e-7)) - torch.atan(wa / (ha + 1e-7))) ** 2
    with torch.no_grad():  # α is a trade-off weight, not a path for gradients (paper, sec. 3.2)
        alpha = v / (1 - iou + v + 1e-7)
    return iou - centre2 / diag2 - alpha * v


# --- 2. the network --------------------------------------------------------------------------

def conv_bn(c_in: int, c_out: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.SiLU())


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels, 1), conv_bn(channels, channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class YoloNet(nn.Module):
    """Backbone to stride 16, top-down pyramid back to stride 4, one grid head.

    Output (B, A, S, S, 5 + C): per anchor and cell tx, ty, tw, th, objectness, classes."""

    def __init__(self, classes: int = len(CLASSES), width: int = 32, image_size: int = 64) -> None:
        super().__init__()
        w = width
        self.classes = classes
        self.image_size = image_size
        scale = image_size / 64
        self.register_buffer("anchors", torch.tensor(ANCHORS_64) * scale, persistent=False)
        self.stem = nn.Sequential(conv_bn(3, w // 2, stride=2), conv_bn(w // 2, w // 2))   # /2
        self.c2 = nn.Sequential(conv_bn(w // 2, w, stride=2), Residual(w))                 # /4
        self.c3 = nn.Sequential(conv_bn(w, 2 * w, stride=2), Residual(2 * w))              # /8
        self.c4 = nn.Sequential(conv_bn(2 * w, 4 * w, stride=2), Residual(4 * w))          # /16
        self.lat4 = nn.Conv2d(4 * w, 2 * w, 1)
        self.lat3 = nn.Conv2d(2 * w, 2 * w, 1)
        self.lat2 = nn.Conv2d(w, 2 * w, 1)
        self.smooth3 = conv_bn(2 * w, 2 * w)
        self.smooth2 = conv_bn(2 * w, 2 * w)
        a = len(ANCHORS_64)
        self.head = nn.Sequential(conv_bn(2 * w, 2 * w), nn.Conv2d(2 * w, a * (5 + classes), 1))
        # Objectness starts at a prior of 1% (Lin et al. 2017, sec. 4.1): almost every cell is
        # background, and a 50% start would flood the first steps with false positives.
        bias = self.head[-1].bias.detach().view(a, 5 + classes)
        bias[:, 4] = math.log(0.01 / 0.99)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c2 = self.c2(self.stem(x))                                      # (B, w, H/4, W/4)
        c3 = self.c3(c2)                                                # (B, 2w, H/8, W/8)
        c4 = self.c4(c3)                                                # (B, 4w, H/16, W/16)
        p3 = self.smooth3(self.lat3(c3) + F.interpolate(self.lat4(c4), scale_factor=2.0))
        p2 = self.smooth2(self.lat2(c2) + F.interpolate(p3, scale_factor=2.0))  # (B, 2w, S, S)
        out = self.head(p2)                                             # (B, A(5+C), S, S)
        s = out.shape[-1]
        a = self.anchors.shape[0]
        return out.view(-1, a, 5 + self.classes, s, s).permute(0, 1, 3, 4, 2)


# --- 3. decoding -----------------------------------------------------------------------------

def decode_boxes(t: torch.Tensor, cells: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Boxes (..., 4) x1, y1, x2, y2 from raw (..., 4) tx, ty, tw, th.

    Centre = (2σ(t) - 0.5 + cell) * stride: the offset reaches slightly past its cell, so a
    centre on a cell border needs no infinite logit (YOLOv4, "grid sensitivity"). Size =
    anchor * (2σ(t))²: bounded to (0, 4 anchor), which keeps early training stable (YOLOv5)."""
    centre = (2 * torch.sigmoid(t[..., :2]) - 0.5 + cells) * STRIDE
    size = anchors * (2 * torch.sigmoid(t[..., 2:4])) ** 2
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def grid_cells(s: int, device: torch.device) -> torch.Tensor:
    """(S, S, 2) holding (x, y) of every cell."""
    ys, xs = torch.meshgrid(torch.arange(s, device=device), torch.arange(s, device=device),
                            indexing="ij")
    return torch.stack([xs, ys], dim=-1).float()


def dense_predictions(model: YoloNet, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every anchor slot as (boxes (B, N, 4), class scores (B, N, C)), N = A·S·S; the score
    of class c is P(object) · P(c | object)."""
    a, s = raw.shape[1], raw.shape[2]
    cells = grid_cells(s, raw.device)                                   # (S, S, 2)
    boxes = decode_boxes(raw[..., :4], cells, model.anchors.view(a, 1, 1, 2))  # (B, A, S, S, 4)
    boxes = boxes.clamp(0, model.image_size)
    scores = torch.sigmoid(raw[..., 4:5]) * torch.softmax(raw[..., 5:], dim=-1)  # (B, A, S, S, C)
    return boxes.flatten(1, 3), scores.flatten(1, 3)                    # (B, N, 4), (B, N, C)


class DenseYolo(nn.Module):
    """The network plus decoding, image in, (boxes, scores) out: what ONNX export runs."""

    def __init__(self, model: YoloNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return dense_predictions(self.model, self.model(x))


# --- 4. targets and loss ---------------------------------------------------------------------

def assign_targets(boxes: torch.Tensor, labels: torch.Tensor, anchors: torch.Tensor, s: int
                   ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor]:
    """Which anchor slots learn which object.

    An object is learned by the cell holding its centre, with every anchor whose width and
    height are within a factor 4 of the object's (YOLOv5's shape rule; the best-fitting anchor
    always takes part). Returns the positive slots (image, anchor, y, x), their target boxes
    (P, 4) and classes (P,). Two objects on one slot (rare at stride 4) both pull on it."""
    image, obj = (labels >= 0).nonzero(as_tuple=True)
    gt, cls = boxes[image, obj], labels[image, obj]                     # (G, 4), (G,)
    wh = (gt[:, 2:] - gt[:, :2]).clamp(min=1.0)                         # (G, 2)
    ratio = wh[:, None, :] / anchors[None]                              # (G, A, 2)
    worst = torch.maximum(ratio, 1 / ratio).amax(-1)                    # (G, A)
    match = worst < 4.0
    match[torch.arange(len(gt), device=gt.device), worst.argmin(1)] = True
    g, a = match.nonzero(as_tuple=True)                                 # (P,), (P,)
    centre = (gt[g, :2] + gt[g, 2:]) / 2
    gx, gy = (centre / STRIDE).long().clamp(0, s - 1).unbind(-1)
    return (image[g], a, gy, gx), gt[g], cls[g]


def yolo_loss(model: YoloNet, raw: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
              box_loss: str, weights: tuple[float, float, float]) -> dict[str, torch.Tensor]:
    """{'box', 'obj', 'cls', 'total'} for raw (B, A, S, S, 5+C) and padded targets."""
    s = raw.shape[2]
    slots, t_box, t_cls = assign_targets(boxes, labels, model.anchors, s)
    n_pos = max(len(t_cls), 1)
    pred = raw[slots]                                                   # (P, 5 + C)
    cells = torch.stack([slots[3], slots[2]], dim=-1).float()          # (P, 2) x, y
    p_box = decode_boxes(pred[:, :4], cells, model.anchors[slots[1]])  # (P, 4)
    overlap = complete_iou(p_box, t_box) if box_loss == "ciou" else generalized_iou(p_box, t_box)
    loss_box = (1 - overlap).mean() if len(t_cls) else raw.sum() * 0
    # Objectness: every slot is a binary example; the sum is normalised by the number of
    # positives (as RetinaNet normalises its loss), so images with many objects weigh more.
    target_obj = torch.zeros_like(raw[..., 4])
    target_obj[slots] = 1.0
    loss_obj = F.binary_cross_entropy_with_logits(raw[..., 4], target_obj, reduction="sum") / n_pos
    loss_cls = F.cross_entropy(pred[:, 5:], t_cls) if len(t_cls) else raw.sum() * 0
    w_box, w_obj, w_cls = weights
    total = w_box * loss_box + w_obj * loss_obj + w_cls * loss_cls
    return {"box": loss_box, "obj": loss_obj, "cls": loss_cls, "total": total}


def random_flips(x: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each image left-right and/or up-down with probability 1/2 each (boxes follow)."""
    b, _, h, w = x.shape
    for dim, size, (lo, hi) in ((3, w, (0, 2)), (2, h, (1, 3))):
        flip = torch.rand(b, device=x.device) < 0.5                     # (B,)
        x = torch.where(flip[:, None, None, None], x.flip(dim), x)
        mirrored = boxes.clone()
        mirrored[..., lo], mirrored[..., hi] = size - boxes[..., hi], size - boxes[..., lo]
        boxes = torch.where(flip[:, None, None], mirrored, boxes)
    return x, boxes


# --- 5. post-processing ----------------------------------------------------------------------

def postprocess(boxes: torch.Tensor, scores: torch.Tensor, conf: float, iou: float,
                max_det: int = 100) -> list[Detections]:
    """Keep (slot, class) pairs scoring over `conf`, then class-wise NMS at `iou`."""
    from torchvision.ops import batched_nms

    out = []
    for img_boxes, img_scores in zip(boxes, scores, strict=True):      # (N, 4), (N, C)
        slot, cls = (img_scores > conf).nonzero(as_tuple=True)
        b, s = img_boxes[slot], img_scores[slot, cls]
        keep = batched_nms(b, s, cls, iou)[:max_det]
        out.append(Detections(b[keep], s[keep], cls[keep]))
    return out


@torch.no_grad()
def detect(model: YoloNet, images: torch.Tensor, conf: float = 0.01, iou: float = 0.5,
           batch_size: int = 128) -> list[Detections]:
    """Detections for (N, 3, H, W) images at the training size, in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    out: list[Detections] = []
    for chunk in images.split(batch_size):
        boxes, scores = dense_predictions(model, model(chunk.to(device)))
        out += postprocess(boxes.cpu(), scores.cpu(), conf=conf, iou=iou)
    return out


# --- 6. the recipe ---------------------------------------------------------------------------

class YoloConfig(DetectionDataConfig):
    epochs: int = Field(10, ge=1)
    """Number of passes over the training set."""
    batch_size: int = Field(16, ge=1)
    """Images per optimisation step."""
    lr: float = Field(4e-3, gt=0, le=10)
    """Peak learning rate (AdamW)."""
    weight_decay: float = Field(5e-4, ge=0)
    """Decoupled weight decay (AdamW)."""
    warmup_fraction: float = Field(0.03, ge=0, lt=1)
    """Fraction of all steps spent warming the learning rate up linearly."""
    grad_clip: float | None = Field(10.0, gt=0)
    """Clip the global gradient norm to this value; None turns clipping off."""
    n_train: int = Field(4000, ge=8)
    """Generated training images (the split is fixed: more images extend it); not used with `data`."""
    n_val: int = Field(300, ge=8)
    """Generated validation images, evaluated after every epoch to keep the best weights."""
    image_size: int = Field(64, ge=32, le=1024, multiple_of=16)
    """Side of the square network input; images of another size (a user's `data`) are resized
    to it. Anchors scale with it (they are set for objects of 10 to 26 pixels at 64)."""
    width: int = Field(32, ge=8, le=256)
    """Channels of the stride-4 stage; deeper stages have 2x and 4x as many."""
    box_loss: Literal["ciou", "giou"] = "ciou"
    """Box regression loss: 1 - CIoU or 1 - GIoU."""
    box_weight: float = Field(2.0, ge=0)
    """Weight of the box loss."""
    obj_weight: float = Field(1.0, ge=0)
    """Weight of the objectness loss."""
    cls_weight: float = Field(1.0, ge=0)
    """Weight of the classification loss."""
    flip: bool = True
    """Augment with random left-right and up-down flips."""
    nms_iou: float = Field(0.5, gt=0, le=1)
    """IoU above which NMS drops the lower-scoring of two same-class boxes."""


def build_model(cfg: YoloConfig) -> YoloNet:
    return YoloNet(len(cfg.class_names), cfg.width, cfg.image_size)


def train(cfg: YoloConfig, ctx: RunContext) -> dict[str, float]:
    splits = {k: resize_samples(v, cfg.image_size) for k, v in detection_data(cfg).items()}
    x_train = image_tensor(splits["train"])
    boxes, labels = padded_targets(splits["train"], max(1, *(len(s.labels) for s in splits["train"])))
    loader = DataLoader(TensorDataset(x_train, boxes, labels), batch_size=cfg.batch_size,
                        shuffle=True, drop_last=len(x_train) > cfg.batch_size)
    x_val, x_test = image_tensor(splits["val"]), image_tensor(splits["test"])
    model = build_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    curves: dict[str, list[float]] = {"box": [], "obj": [], "cls": [], "total": []}
    weights = (cfg.box_weight, cfg.obj_weight, cfg.cls_weight)

    def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, b, lab = batch
        if cfg.flip:
            x, b = random_flips(x, b)
        losses = yolo_loss(model, model(x), b, lab, cfg.box_loss, weights)  # type: ignore[arg-type]
        for k, v in losses.items():
            curves[k].append(float(v.detach()))
        return losses["total"]

    def evaluate(model: nn.Module) -> dict[str, float]:
        dets = detect(model, x_val, iou=cfg.nms_iou)  # type: ignore[arg-type]
        return {"val_map50": mean_average_precision(splits["val"], dets)["map50"]}

    result = fit(model, loader, loss_fn=loss_fn, evaluate=evaluate, cfg=cfg, ctx=ctx,
                 optimizer=optimizer, monitor="val_map50")
    model.eval()
    test_dets = detect(model, x_test, iou=cfg.nms_iou)
    test = mean_average_precision(splits["test"], test_dets)
    single = x_test[:1]
    latency = cpu_latency_ms(lambda: detect(model, single, iou=cfg.nms_iou))
    _figures(ctx, result.history, curves, splits["test"][:8], test_dets[:8], cfg.class_names)
    ctx.save_model(model, extra={"categories": list(cfg.class_names), "image_size": model.image_size})
    return {
        "test_map50": test["map50"], "test_map": test["map"], "test_map75": test["map75"],
        "val_map50": result.best_value, "best_epoch": float(result.best_epoch),
        "latency_ms": latency, "params": float(sum(p.numel() for p in model.parameters())),
    }


def _figures(ctx: RunContext, history: list[dict[str, float]], curves: dict[str, list[float]],
             samples: list[Sample], dets: list[Detections], categories: tuple[str, ...]) -> None:
    learning_curves(history, ctx.figure_path("learning_curves.png"), "vision.detect-yolo")
    smooth = {k: _running_mean(v, 20) for k, v in curves.items() if v}
    if smooth:
        loss_curves(smooth, ctx.figure_path("loss_components.png"), "YOLO loss terms")
    draw_detections(samples, dets, categories, ctx.figure_path("test_predictions.png"),
                    "vision.detect-yolo on test images (dashed: ground truth)")


def _running_mean(values: list[float], window: int) -> list[float]:
    v = np.asarray(values, dtype=np.float64)
    kernel = np.ones(min(window, len(v))) / min(window, len(v))
    return np.convolve(v, kernel, mode="valid").tolist()


RECIPE = register(Recipe(
    name="vision.detect-yolo",
    step="1",
    topic="CNNs: object detection",
    summary="A one-stage YOLO-style detector (anchors, CIoU, NMS) written here, on procedural shapes.",
    config=YoloConfig,
    train=train,
    bar=Bar("test_map50", ">=", 0.90),
    quick_bar=Bar("test_map50", ">=", 0.30),
    budget_s=900,
    quick={"epochs": 3, "n_train": 800, "n_val": 100},
    build_model=build_model,
))
