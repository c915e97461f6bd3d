"""ONNX export of the YOLO-style detector, and detection with ONNX Runtime.

The exported graph is the network plus box decoding (`DenseYolo`): images (N, 3, 64, 64) in,
boxes (N, A·S·S, 4) and class scores (N, A·S·S, C) out, with a dynamic batch axis. NMS stays
outside the graph and is the same `postprocess` for both runtimes, so PyTorch and ONNX Runtime
give the same detections when the dense outputs agree (tests/vision check both).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from aiforge.core.errors import InputError
from aiforge.core.loading import load_model, load_model_config
from aiforge.vision.detection import Detections

OPSET = 17
FORMATS = ("onnx",)
EXPORTABLE = ("vision.detect-yolo",)


def export_model(recipe: str, run: Path, out: Path | None = None, fmt: str = "onnx") -> Path:
    """`aiforge export`: write the trained model of run folder `run` (a run of `recipe`) in
    format `fmt` to `out` (default RUN/model.onnx). Everything is checked before a file is
    written."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")
    if recipe not in EXPORTABLE:
        raise InputError(f"export covers {', '.join(EXPORTABLE)}, not {recipe!r}")
    meta = load_model_config(run)
    if meta["recipe"] != recipe:
        raise InputError(f"{run} holds a model of {meta['recipe']!r}, not {recipe!r}")
    return export_yolo_onnx(run, out if out is not None else Path(run) / "model.onnx")


def export_yolo_onnx(run: Path, path: Path) -> Path:
    """Write the trained detector of run folder `run` as ONNX to `path`."""
    from aiforge.vision.yolo import DenseYolo

    meta = load_model_config(run)
    if meta["recipe"] != "vision.detect-yolo":
        raise InputError(f"ONNX export covers vision.detect-yolo; {run} holds {meta['recipe']!r}")
    model = load_model(run)
    dense = DenseYolo(model).eval()  # type: ignore[arg-type]
    size = model.image_size  # type: ignore[attr-defined]
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the TorchScript exporter warns about itself
        warnings.simplefilter("ignore")
        torch.onnx.export(
            dense, (torch.zeros(1, 3, size, size),), str(path), opset_version=OPSET,
            input_names=["images"], output_names=["boxes", "scores"], dynamo=False,
            dynamic_axes={"images": {0: "batch"}, "boxes": {0: "batch"}, "scores": {0: "batch"}})
    return path


def onnx_dense(path: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(boxes, scores) from ONNX Runtime for float32 images (N, 3, H, W) in [0, 1]."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    boxes, scores = session.run(None, {"images": images.astype(np.float32)})
    return boxes, scores


def onnx_detect(path: Path, images: np.ndarray, conf: float = 0.01, iou: float = 0.5) -> list[Detections]:
    from aiforge.vision.yolo import postprocess

    boxes, scores = onnx_dense(path, images)
    return postprocess(torch.from_numpy(boxes), torch.from_numpy(scores), conf=conf, iou=iou)
