"""The detectors on a user's own COCO file (`--set data=PATH`): classes come from the file,
a few training steps run, the saved model predicts those classes; bad paths and bad JSON
fail before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import masks_to_boxes
from typer.testing import CliRunner

from aiforge.cli import app
from aiforge.core import InputError, run_recipe
from aiforge.core.loading import load_model_config
from aiforge.data.coco import write_coco
from aiforge.data.shapes import Sample, ShapesSpec, make_shapes
from aiforge.vision.detection import detection_data, resize_samples
from aiforge.vision.predict import predict_image
from aiforge.vision.yolo import YoloConfig

CATEGORIES = ["curved", "straight"]   # not the shapes' four: the classes must come from the file


@pytest.fixture(scope="module")
def coco_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten 80x80 images (not the detectors' 64) with two classes, written as COCO JSON."""
    samples = make_shapes(10, seed=21, spec=ShapesSpec(image_size=80))
    two_class = [Sample(s.image, s.boxes, (s.labels != 0).astype(np.int64), s.masks) for s in samples]
    return write_coco(two_class, tmp_path_factory.mktemp("coco"), CATEGORIES)


TINY = {
    "vision.detect-yolo": {"epochs": 2, "batch_size": 4},
    "vision.detect-frcnn": {"epochs": 1, "batch_size": 4, "input_size": 64},
    "vision.segment-maskrcnn": {"epochs": 1, "batch_size": 4, "input_size": 64},
}


@pytest.mark.parametrize("recipe", list(TINY))
def test_detector_trains_on_a_coco_file(recipe: str, coco_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_recipe(recipe, overrides={"data": str(coco_file), **TINY[recipe]}, out=out,
                        track=False, quiet=True)
    assert all(np.isfinite(v) for v in result.metrics.values()), result.metrics
    meta = load_model_config(out)
    assert meta["categories"] == CATEGORIES
    assert meta["config"]["categories"] == CATEGORIES  # type: ignore[index]
    found = predict_image(recipe, out, coco_file.parent / "images" / "000000.png", min_score=0.0)
    assert {d["label"] for d in found["detections"]} <= set(CATEGORIES)
    for det in found["detections"]:   # boxes in the 80-pixel image's own pixels
        assert all(0 <= v <= 80 for v in det["box"])


def test_split_is_fixed_and_disjoint(coco_file: Path) -> None:
    cfg = YoloConfig.from_dict({"data": str(coco_file)})
    a, b = detection_data(cfg), detection_data(cfg)
    assert [len(a[k]) for k in ("train", "val", "test")] == [8, 1, 1]
    images = [s.image.tobytes() for k in ("train", "val", "test") for s in a[k]]
    assert len(set(images)) == 10, "every image in exactly one split"
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a["train"], b["train"], strict=True))


def test_resize_keeps_boxes_on_masks() -> None:
    samples = make_shapes(4, seed=8, spec=ShapesSpec(image_size=80))
    for s in resize_samples(samples, 64):
        assert s.image.shape == (64, 64, 3) and s.masks.shape[1:] == (64, 64)
        from_masks = masks_to_boxes(torch.from_numpy(s.masks)) + torch.tensor([0, 0, 1, 1])
        # edges agree to under a pixel, except where resampling drops a star's one-pixel tip
        error = (torch.from_numpy(s.boxes) - from_masks).abs()
        assert error.max() < 2.0 and (error <= 1.0).float().mean() > 0.9, error


@pytest.mark.parametrize("case", ["missing", "bad_json", "not_coco", "no_image_folder"])
def test_bad_data_fails_before_writing(case: str, coco_file: Path, tmp_path: Path) -> None:
    overrides = {"data": str(tmp_path / "missing.json")}
    if case == "bad_json":
        (tmp_path / "bad.json").write_text("{not json")
        overrides["data"] = str(tmp_path / "bad.json")
    elif case == "not_coco":
        (tmp_path / "list.json").write_text(json.dumps([{"images": []}]))
        overrides["data"] = str(tmp_path / "list.json")
    elif case == "no_image_folder":
        overrides = {"data": str(coco_file), "data_images": str(tmp_path / "nowhere")}
    out = tmp_path / "run"
    with pytest.raises(InputError, match="'data'"):
        run_recipe("vision.detect-frcnn", overrides=overrides, out=out, track=False, quiet=True)
    assert not out.exists()


def test_cli_bad_data_is_one_error_line(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", "vision.detect-yolo", "--quick", "--no-track", "--out", str(out),
                                   "--set", f"data={tmp_path / 'nope.json'}"])
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1 and "nope.json" in res.stderr
    assert not out.exists()


def test_mask_rcnn_needs_masks(tmp_path: Path) -> None:
    path = write_coco(make_shapes(4, seed=2), tmp_path, ["a", "b", "c", "d"])
    data = json.loads(path.read_text())
    for ann in data["annotations"]:
        del ann["segmentation"]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="without segmentation"):
        run_recipe("vision.segment-maskrcnn", overrides={"data": str(path), "epochs": 1},
                   out=tmp_path / "run", track=False, quiet=True)
