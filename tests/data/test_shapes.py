"""The shapes generator: deterministic, boxes agree with masks, occlusion bounded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import masks_to_boxes

from aiforge.data.shapes import (
    CLASSES,
    ShapesSpec,
    fill_polygon,
    image_tensor,
    make_shapes,
    padded_targets,
    shape_mask,
    shapes_splits,
)


@pytest.fixture(scope="module")
def samples():
    return make_shapes(60, seed=7)


def test_same_seed_same_images_and_index_addressable(samples) -> None:
    again = make_shapes(5, seed=7, start=10)
    for a, b in zip(samples[10:15], again, strict=True):
        assert np.array_equal(a.image, b.image)
        assert np.array_equal(a.masks, b.masks)
    other = make_shapes(5, seed=8)
    assert not np.array_equal(samples[0].image, other[0].image)


def test_boxes_agree_with_masks(samples) -> None:
    for s in samples:
        assert len(s.boxes) == len(s.labels) == len(s.masks) >= 1
        # torchvision gives inclusive pixel indices; ours are pixel edges (COCO): +1 on x2, y2
        ref = masks_to_boxes(torch.from_numpy(s.masks)) + torch.tensor([0, 0, 1, 1])
        assert torch.equal(torch.from_numpy(s.boxes), ref)


def test_masks_disjoint_and_occlusion_bounded(samples) -> None:
    for s in samples:
        assert s.masks.sum(0).max() <= 1, "a pixel belongs to one visible object at most"
        assert (s.masks.sum((1, 2)) >= 8).all()


def test_variety(samples) -> None:
    counts = [len(s.labels) for s in samples]
    assert min(counts) >= 1 and max(counts) <= 6 and len(set(counts)) >= 4
    assert set(np.concatenate([s.labels for s in samples]).tolist()) == set(range(len(CLASSES)))
    assert np.std([s.image.mean() for s in samples]) > 10, "backgrounds vary"


def test_polygon_fill_matches_area() -> None:
    square = np.array([[8.0, 8.0], [24.0, 8.0], [24.0, 24.0], [8.0, 24.0]])
    assert fill_polygon(square, 32).sum() == 16 * 16
    circle = shape_mask("circle", 32, 32, 40, 0.0, 64)
    assert abs(circle.sum() - np.pi * 20**2) < 0.02 * np.pi * 20**2
    star, hexagon_like = shape_mask("star", 32, 32, 40, 0.0, 64), shape_mask("square", 32, 32, 40, 0.0, 64)
    assert star.sum() < hexagon_like.sum(), "the star is concave: less area than its hull"


def test_splits_disjoint_and_tensors() -> None:
    splits = shapes_splits(4, 3, 3)
    assert not np.array_equal(splits["train"][0].image, splits["test"][0].image)
    x = image_tensor(splits["train"])
    assert x.shape == (4, 3, 64, 64) and x.dtype == torch.float32 and 0 <= x.min() <= x.max() <= 1
    boxes, labels = padded_targets(splits["train"], 6)
    assert boxes.shape == (4, 6, 4) and (labels >= 0).sum() == sum(len(s.labels) for s in splits["train"])


def test_bad_spec() -> None:
    with pytest.raises(ValueError):
        ShapesSpec(min_objects=3, max_objects=2)
