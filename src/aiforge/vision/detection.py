"""What the three detectors share: the data they train on, COCO-style mAP, drawn predictions
and CPU latency. The detectors themselves (yolo.py, frcnn.py, maskrcnn.py) stay readable on
their own; this file is plumbing.

mAP comes from torchmetrics' `MeanAveragePrecision` with the pycocotools backend, i.e. the
COCO evaluation code itself (101-point interpolated AP, maximum 100 detections per image).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from aiforge.core.errors import InputError
from aiforge.data.shapes import Sample


@dataclass(frozen=True)
class Detections:
    """One image's predictions, in pixels of that image."""

    boxes: torch.Tensor   # (K, 4) x1, y1, x2, y2
    scores: torch.Tensor  # (K,)
    labels: torch.Tensor  # (K,) 0-based class index
    masks: torch.Tensor | None = None  # (K, H, W) bool, for instance segmentation

    def as_json(self, categories: Sequence[str]) -> list[dict[str, object]]:
        return [{"label": categories[int(lab)], "score": round(float(s), 4),
                 "box": [round(float(v), 2) for v in b]}
                for b, s, lab in zip(self.boxes, self.scores, self.labels, strict=True)]


def mean_average_precision(samples: Sequence[Sample], predictions: Sequence[Detections],
                           iou_type: str = "bbox") -> dict[str, float]:
    """COCO mAP@[.5:.95], mAP@0.5 and mAP@0.75 of `predictions` against the samples' boxes
    (iou_type 'bbox') or masks ('segm')."""
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(box_format="xyxy", iou_type=iou_type, backend="pycocotools")
    preds, targets = [], []
    for sample, det in zip(samples, predictions, strict=True):
        pred = {"scores": det.scores, "labels": det.labels}
        target = {"labels": torch.from_numpy(sample.labels)}
        if iou_type == "segm":
            if det.masks is None:
                raise ValueError("segm mAP needs predicted masks")
            pred["masks"], target["masks"] = det.masks.bool(), torch.from_numpy(sample.masks)
        else:
            pred["boxes"], target["boxes"] = det.boxes, torch.from_numpy(sample.boxes)
        preds.append(pred)
        targets.append(target)
    metric.update(preds, targets)
    result = metric.compute()
    return {"map": float(result["map"]), "map50": float(result["map_50"]),
            "map75": float(result["map_75"])}


def draw_detections(samples: Sequence[Sample], predictions: Sequence[Detections],
                    categories: Sequence[str], path: Path, title: str = "",
                    min_score: float = 0.3) -> Path:
    """A grid of images with predicted boxes, labels, scores (and masks when present);
    the ground-truth boxes are drawn thin and dashed in white."""
    n = len(samples)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    palette = plt.get_cmap("tab10")
    for ax, sample, det in zip(axes.flat, samples, predictions, strict=False):
        image = sample.image.astype(np.float32) / 255
        keep = det.scores >= min_score
        if det.masks is not None:
            for mask, label in zip(det.masks[keep], det.labels[keep], strict=True):
                colour = np.asarray(palette(int(label))[:3])
                m = mask.numpy().astype(bool)
                image[m] = 0.55 * image[m] + 0.45 * colour
        ax.imshow(image)
        for box in sample.boxes:
            x1, y1, x2, y2 = box
            ax.add_patch(plt.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False,
                                       ec="white", lw=0.6, ls="--"))
        for box, score, label in zip(det.boxes[keep], det.scores[keep], det.labels[keep], strict=True):
            x1, y1, x2, y2 = box.tolist()
            colour = palette(int(label))
            ax.add_patch(plt.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False,
                                       ec=colour, lw=1.4))
            ax.text(x1, y1 - 1, f"{categories[int(label)]} {float(score):.2f}", fontsize=6,
                    color="white", bbox={"fc": colour, "pad": 0.5, "lw": 0})
        ax.set_axis_off()
    for ax in list(axes.flat)[n:]:
        ax.set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def loss_curves(curves: dict[str, Sequence[float]], path: Path, title: str = "",
                xlabel: str = "step") -> Path:
    """Training loss components against steps (log scale), one line each."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for name, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=name, lw=1)
    ax.set(xlabel=xlabel, ylabel="loss", yscale="log", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cpu_latency_ms(predict_one: Callable[[], object], repeats: int = 20) -> float:
    """Median wall time of one single-image prediction, in milliseconds, after a warm-up."""
    predict_one()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        predict_one()
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))


def load_weights_file(model: torch.nn.Module, path: str, prefix: str = "") -> tuple[int, int]:
    """Load a torchvision-format state dict (a `.pth` of tensors, or `.safetensors`) into
    `model` where names and shapes match; returns (loaded, skipped). Used by `weights=PATH`
    to start from weights a user has (for example ImageNet ones), never from the network."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"weights file not found: {file}")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(file))
        else:  # weights_only: tensors and containers only, no code is unpickled
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # torch and safetensors raise many types for a bad file
        raise InputError(f"cannot read weights file {file}: {err}") from None
    if not isinstance(state, dict):
        raise InputError(f"{file} holds no state dict")
    own = model.state_dict()
    fitting = {k: v for k, v in ((prefix + k, v) for k, v in state.items())
               if k in own and own[k].shape == v.shape}
    if not fitting:
        raise InputError(f"no tensor in {file} fits the model (names or shapes differ)")
    model.load_state_dict(fitting, strict=False)
    return len(fitting), len(state) - len(fitting)
