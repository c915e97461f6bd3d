"""What the three detectors share: the data they train on (the generated shapes or a user's
COCO file), COCO-style mAP, drawn predictions and CPU latency. The detectors themselves
(yolo.py, frcnn.py, maskrcnn.py) stay readable on their own; this file is plumbing.

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
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, field_validator, model_validator

from aiforge.core import SupervisedConfig
from aiforge.core.errors import InputError
from aiforge.data.coco import coco_categories, read_coco
from aiforge.data.shapes import CLASSES, Sample, shapes_splits

SPLIT_SEED = 4321  # a user's images are split once, the same way on every run (not --seed)


# --- data: the generated shapes or a user's COCO file ---------------------------------------

class DetectionDataConfig(SupervisedConfig):
    """The data fields every detector shares."""

    n_train: int = Field(2000, ge=8)
    """Generated training images (the split is fixed: more images extend it); not used with `data`."""
    n_val: int = Field(150, ge=8)
    """Generated validation images, evaluated after every epoch to keep the best weights."""
    n_test: int = Field(500, ge=8)
    """Generated test images for the reported mAP."""
    categories: tuple[str, ...] | None = None
    """Class names. None: the shapes' four classes, or with `data` the file's categories, filled
    in when the config is parsed (so a saved model rebuilds without the file)."""
    data_images: str | None = None
    """Folder that the `data` file's `file_name`s are relative to; default the file's own folder."""
    data: str | None = None
    """A COCO annotation file to train on instead of the generated shapes (boxes; Mask R-CNN
    also needs polygon or RLE masks). Its images split 80/10/10 into train/val/test."""

    @model_validator(mode="before")
    @classmethod
    def _categories_from_data(cls, values: object) -> object:
        # Derived right after parsing: the class names the model is built for. A bad file is
        # left for `_data_is_usable` to report on the `data` field itself.
        if isinstance(values, dict) and values.get("data") and not values.get("categories"):
            try:
                return {**values, "categories": _user_categories(values["data"], values.get("data_images"))}
            except InputError:
                return values
        return values

    @field_validator("data")
    @classmethod
    def _data_is_usable(cls, path: str | None, info: ValidationInfo) -> str | None:
        # With categories known (derived above, or a saved config) the file is not needed now.
        if path is not None and info.data.get("categories") is None:
            try:
                _user_categories(path, info.data.get("data_images"))
            except InputError as err:
                raise ValueError(str(err)) from None
        return path

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.categories if self.categories is not None else CLASSES


def _user_categories(data: str, images: str | None) -> tuple[str, ...]:
    """The categories of a user's COCO file, after checking the file and the image folder."""
    if images is not None and not Path(images).is_dir():
        raise InputError(f"no such image folder (data_images): {images}")
    return tuple(coco_categories(Path(data)))


def detection_data(cfg: DetectionDataConfig, with_masks: bool = False) -> dict[str, list[Sample]]:
    """{'train', 'val', 'test'}: the generated shapes, or the user's COCO images split 80/10/10
    by a fixed shuffle (at least one image each)."""
    if cfg.data is None:
        return shapes_splits(cfg.n_train, cfg.n_val, cfg.n_test)
    dataset = read_coco(Path(cfg.data), None if cfg.data_images is None else Path(cfg.data_images))
    if tuple(dataset.categories) != cfg.class_names:
        raise InputError(f"{cfg.data} has categories {dataset.categories}, the config "
                         f"{list(cfg.class_names)}")
    samples = dataset.samples
    if len(samples) < 3:
        raise InputError(f"{cfg.data} has {len(samples)} images; train, val and test need 3 or more")
    if with_masks:
        for sample, name in zip(samples, dataset.file_names, strict=True):
            if len(sample.masks) != len(sample.labels):
                raise InputError(f"{cfg.data}: {name} has annotations without segmentation; "
                                 f"instance segmentation needs a mask for every object")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(samples))
    n_val = n_test = max(1, round(0.1 * len(samples)))
    parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test],
             "train": order[n_val + n_test:]}
    return {name: [samples[i] for i in sorted(idx)] for name, idx in parts.items()}


def resize_samples(samples: Sequence[Sample], size: int) -> list[Sample]:
    """Samples resized to size x size (boxes scaled, masks by nearest pixel), for a network
    trained at one fixed size; resizing is the same as `aiforge predict` does (bilinear,
    antialiased). Samples already at that size are kept as they are."""
    out = []
    for s in samples:
        height, width = s.image.shape[:2]
        if (height, width) == (size, size):
            out.append(s)
            continue
        image = torch.from_numpy(s.image).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
        image = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False)
        scale = np.array([size / width, size / height] * 2, dtype=np.float32)
        masks = np.zeros((0, size, size), dtype=bool)
        if len(s.masks):
            resized = F.interpolate(torch.from_numpy(s.masks)[None].float(), size=(size, size),
                                    mode="nearest-exact")                # (1, K, size, size)
            masks = (resized[0] > 0.5).numpy()
        out.append(Sample(image[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy(),
                          s.boxes * scale, s.labels, masks))
    return out


# --- predictions and their evaluation --------------------------------------------------------


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
