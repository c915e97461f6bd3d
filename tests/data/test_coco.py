"""COCO JSON: round trip of the shapes set, polygon and RLE fixtures, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from aiforge.core.errors import InputError
from aiforge.data.coco import coco_categories, read_coco, write_coco
from aiforge.data.shapes import CLASSES, make_shapes


def test_round_trip(tmp_path: Path) -> None:
    samples = make_shapes(8, seed=3)
    path = write_coco(samples, tmp_path, CLASSES)
    back = read_coco(path)
    assert back.categories == list(CLASSES)
    for a, b in zip(samples, back.samples, strict=True):
        assert np.array_equal(a.image, b.image)
        assert np.array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.boxes, b.boxes)
        assert np.array_equal(a.masks, b.masks)


def test_bbox_matches_pycocotools(tmp_path: Path) -> None:
    samples = make_shapes(4, seed=5)
    data = json.loads(write_coco(samples, tmp_path, CLASSES).read_text())
    for ann in data["annotations"]:
        rle = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
        np.testing.assert_allclose(ann["bbox"], mask_utils.toBbox(rle))
        assert ann["area"] == mask_utils.area(rle)


def _fixture(tmp_path: Path, segmentation: object, categories: list[dict]) -> Path:
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.jpg")
    data = {
        "images": [{"id": 5, "file_name": "a.jpg", "width": 30, "height": 20}],
        "categories": categories,
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 7, "bbox": [2, 3, 10, 5], "iscrowd": 0,
             "area": 50, "segmentation": segmentation},
            {"id": 2, "image_id": 5, "category_id": 3, "bbox": [0, 0, 30, 20], "iscrowd": 1,
             "area": 600, "segmentation": segmentation},
        ],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def test_polygon_and_uncompressed_rle(tmp_path: Path) -> None:
    cats = [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]
    polygon = [[2, 3, 12, 3, 12, 8, 2, 8]]
    ds = read_coco(_fixture(tmp_path, polygon, cats))
    assert ds.categories == ["cat", "dog"]                 # ordered by category id
    (s,) = ds.samples
    assert s.labels.tolist() == [1] and s.boxes.tolist() == [[2, 3, 12, 8]]  # crowd skipped
    rows, cols = np.nonzero(s.masks[0])
    assert cols.min() >= 2 and cols.max() <= 12 and rows.min() >= 3 and rows.max() <= 8
    # the same mask as uncompressed RLE (column-major run lengths, starting with zeros)
    flat = s.masks[0].flatten(order="F").astype(int)
    runs, current, count = [], 0, 0
    for v in flat:
        if v != current:
            runs.append(count)
            current, count = v, 0
        count += 1
    runs.append(count)
    ds2 = read_coco(_fixture(tmp_path, {"size": [20, 30], "counts": runs}, cats))
    assert np.array_equal(ds2.samples[0].masks, s.masks)


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such COCO"):
        read_coco(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_coco(tmp_path / "bad.json")
    (tmp_path / "partial.json").write_text('{"images": []}')
    with pytest.raises(InputError, match="not COCO"):
        read_coco(tmp_path / "partial.json")
    path = _fixture(tmp_path, [[2, 3, 12, 3, 12, 8]], [{"id": 7, "name": "dog"}, {"id": 3, "name": "c"}])
    (tmp_path / "a.jpg").write_text("not an image")
    with pytest.raises(InputError, match="not a readable image"):
        read_coco(path)


def test_categories_without_reading_images(tmp_path: Path) -> None:
    path = _fixture(tmp_path, [[2, 3, 12, 3, 12, 8]], [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}])
    (tmp_path / "a.jpg").unlink()                          # images are not needed for this
    assert coco_categories(path) == ["cat", "dog"]
    for bad, message in (({"images": [], "annotations": [], "categories": []}, "no categories"),
                         ({"images": [], "annotations": [], "categories": [{"id": "x"}]}, "integer 'id'"),
                         ([1, 2], "no top-level object")):
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(InputError, match=message):
            coco_categories(tmp_path / "bad.json")
