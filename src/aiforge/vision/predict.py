"""Run a trained detector on a user's image: detections as JSON and an annotated picture.

Works for the three detection recipes. The YOLO network was trained at a fixed size, so the
image is resized to it and the boxes scaled back; the torchvision models resize inside
themselves and answer in the image's own pixels already.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from aiforge.core.errors import InputError
from aiforge.core.loading import load_model, load_model_config
from aiforge.data.coco import read_image
from aiforge.data.shapes import Sample
from aiforge.vision.detection import Detections, draw_detections

DETECTORS = ("vision.detect-yolo", "vision.detect-frcnn", "vision.segment-maskrcnn")


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).float().div(255)    # (3, H, W)


def detect_image(model: torch.nn.Module, recipe: str, image: np.ndarray, image_size: int) -> Detections:
    """All detections of one (H, W, 3) uint8 image, in that image's pixels."""
    if recipe == "vision.detect-yolo":
        from aiforge.vision.yolo import detect

        height, width = image.shape[:2]
        x = F.interpolate(_to_tensor(image)[None], size=(image_size, image_size),
                          mode="bilinear", antialias=True, align_corners=False)
        det = detect(model, x)[0]  # type: ignore[arg-type]
        scale = torch.tensor([width, height, width, height]) / image_size
        return Detections(det.boxes * scale, det.scores, det.labels)
    from aiforge.vision.two_stage import detect as detect_two_stage

    sample = Sample(image, np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                    np.zeros((0, *image.shape[:2]), bool))
    return detect_two_stage(model, [sample])[0]


def predict_image(recipe: str, run: Path, image_path: Path, out: Path | None = None,
                  min_score: float = 0.3) -> dict[str, Any]:
    """Detections scoring at least `min_score` (JSON-ready) and, when `out` is given, the
    image with them drawn, saved there."""
    if recipe not in DETECTORS:
        raise InputError(f"predict knows the detectors {', '.join(DETECTORS)}, not {recipe!r}")
    meta = load_model_config(run)
    if meta["recipe"] != recipe:
        raise InputError(f"{run} holds a model of {meta['recipe']!r}, not {recipe!r}")
    image = read_image(Path(image_path))
    model = load_model(run)
    categories = [str(c) for c in meta.get("categories", [])]  # type: ignore[attr-defined]
    config = meta["config"]
    size = int(meta.get("image_size", 64)) if isinstance(config, dict) else 64
    det = detect_image(model, recipe, image, size)
    keep = det.scores >= min_score
    det = Detections(det.boxes[keep], det.scores[keep], det.labels[keep],
                     None if det.masks is None else det.masks[keep])
    result: dict[str, Any] = {"recipe": recipe, "image": str(image_path),
                              "detections": det.as_json(categories)}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        blank = Sample(image, np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                       np.zeros((0, *image.shape[:2]), bool))
        draw_detections([blank], [det], categories, out, recipe, min_score=min_score)
        result["annotated"] = str(out)
    return result
