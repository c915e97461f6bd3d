"""Procedural shapes: images with boxes and instance masks for detection and segmentation.

Every image holds 1 to 6 objects of four classes (circle, square, triangle, star) with random
size, rotation and colour, drawn over a textured or noisy background. Objects are drawn in
order, so a later one may hide part of an earlier one (partial occlusion); a placement that
would hide more than `max_occlusion` of an object already there is rejected. Each object's
mask holds only its *visible* pixels, and its box is computed from that mask, so boxes and
masks always agree.

The data are a pure function of `(seed, index)`: image 17 of seed 3 is the same whether 20
or 20,000 images are generated, on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

CLASSES = ("circle", "square", "triangle", "star")
SPLIT_SEEDS = {"train": 1000, "val": 2000, "test": 3000}  # the splits are part of the data set


@dataclass(frozen=True)
class ShapesSpec:
    """What the generator draws. The defaults fit a CPU detector at 64x64 pixels."""

    image_size: int = 64
    min_objects: int = 1
    max_objects: int = 6
    min_size: int = 12
    """Smallest object diameter in pixels (before occlusion)."""
    max_size: int = 30
    max_occlusion: float = 0.5
    """At most this fraction of an object's pixels may be hidden by later objects."""

    def __post_init__(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError("need 1 <= min_objects <= max_objects")
        if not 4 <= self.min_size <= self.max_size <= self.image_size:
            raise ValueError("need 4 <= min_size <= max_size <= image_size")
        if not 0.0 <= self.max_occlusion < 1.0:
            raise ValueError("max_occlusion must lie in [0, 1)")


@dataclass(frozen=True)
class Sample:
    """One annotated image. Box coordinates are pixel edges: a mask covering columns 3..7
    has x1 = 3 and x2 = 8 (the COCO convention, width = 5)."""

    image: np.ndarray   # (H, W, 3) uint8
    boxes: np.ndarray   # (K, 4) float32 x1, y1, x2, y2
    labels: np.ndarray  # (K,) int64 class index into the category names, 0-based
    masks: np.ndarray   # (K, H, W) bool, visible pixels of each object


# --- geometry ---------------------------------------------------------------------------

def polygon_vertices(kind: str, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    """Vertices (V, 2) as (x, y) of a regular shape with circumradius `radius`."""
    if kind == "square":
        turns = np.arange(4) / 4
        radii = np.full(4, radius)
    elif kind == "triangle":
        turns = np.arange(3) / 3
        radii = np.full(3, radius)
    elif kind == "star":  # five points, inner radius 0.45 of the outer one
        turns = np.arange(10) / 10
        radii = np.where(np.arange(10) % 2 == 0, radius, 0.45 * radius)
    else:
        raise ValueError(f"no polygon for {kind!r}")
    theta = angle + 2 * np.pi * turns
    return np.stack([cx + radii * np.cos(theta), cy + radii * np.sin(theta)], axis=1)


def fill_polygon(vertices: np.ndarray, size: int) -> np.ndarray:
    """(size, size) bool mask of the pixels whose centres lie inside the polygon (even-odd
    rule: a ray from the point crosses the boundary an odd number of times)."""
    ys, xs = np.mgrid[0:size, 0:size] + 0.5          # pixel centres, (size, size) each
    inside = np.zeros((size, size), dtype=bool)
    x0, y0 = vertices[:, 0], vertices[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    for ax, ay, bx, by in zip(x0, y0, x1, y1, strict=True):
        straddles = (ay > ys) != (by > ys)           # the edge spans this pixel row
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = ax + (ys - ay) * (bx - ax) / (by - ay)
        inside ^= straddles & (xs < x_cross)
    return inside


def shape_mask(kind: str, cx: float, cy: float, diameter: float, angle: float, size: int) -> np.ndarray:
    if kind == "circle":
        ys, xs = np.mgrid[0:size, 0:size] + 0.5
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= (diameter / 2) ** 2
    return fill_polygon(polygon_vertices(kind, cx, cy, diameter / 2, angle), size)


def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """(4,) x1, y1, x2, y2 in pixel edges of a non-empty (H, W) mask."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)


# --- appearance ---------------------------------------------------------------------------

def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float texture in [0, 255]: flat, gradient, stripes or patches, plus noise."""
    base = rng.uniform(40, 215, size=3)
    ys, xs = np.mgrid[0:size, 0:size] / size
    kind = rng.integers(4)
    if kind == 0:    # flat colour
        pattern = np.zeros((size, size))
    elif kind == 1:  # linear gradient in a random direction
        a = rng.uniform(0, 2 * np.pi)
        pattern = (np.cos(a) * xs + np.sin(a) * ys) - 0.5
    elif kind == 2:  # sinusoidal stripes
        a, freq = rng.uniform(0, 2 * np.pi), rng.uniform(2, 8)
        pattern = 0.5 * np.sin(2 * np.pi * freq * (np.cos(a) * xs + np.sin(a) * ys))
    else:            # blocky patches: coarse noise upsampled by repetition
        cells = int(rng.integers(3, 8))
        coarse = rng.uniform(-0.5, 0.5, size=(cells, cells))
        idx = np.minimum((np.arange(size) * cells) // size, cells - 1)
        pattern = coarse[idx][:, idx]
    amplitude = rng.uniform(20, 60)
    tint = rng.uniform(0.5, 1.0, size=3)
    texture = base + amplitude * pattern[..., None] * tint
    noise = rng.normal(0, rng.uniform(2, 12), size=(size, size, 3))
    return texture + noise


def object_colour(rng: np.random.Generator, avoid: np.ndarray) -> np.ndarray:
    """A colour at least 90 (RGB distance) from `avoid`, so the object stays visible."""
    for _ in range(50):
        colour = rng.uniform(0, 255, size=3)
        if np.linalg.norm(colour - avoid) >= 90:
            return colour
    return 255 - avoid


# --- one image ----------------------------------------------------------------------------

def render(rng: np.random.Generator, spec: ShapesSpec) -> Sample:
    size = spec.image_size
    canvas = background(rng, size)
    full: list[np.ndarray] = []     # each object's whole mask
    visible: list[np.ndarray] = []  # what is left of it after later objects are drawn
    labels: list[int] = []
    wanted = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    for _ in range(wanted):
        for _attempt in range(30):
            label = int(rng.integers(len(CLASSES)))
            diameter = rng.uniform(spec.min_size, spec.max_size)
            cx, cy = rng.uniform(diameter / 2, size - diameter / 2, size=2)
            mask = shape_mask(CLASSES[label], cx, cy, diameter, rng.uniform(0, 2 * np.pi), size)
            hidden_ok = all(
                (vis & ~mask).sum() >= (1 - spec.max_occlusion) * whole.sum()
                for whole, vis in zip(full, visible, strict=True))
            if mask.sum() >= 8 and hidden_ok:
                break
        else:
            continue  # no room left for this object: the image holds fewer
        visible = [vis & ~mask for vis in visible]
        full.append(mask)
        visible.append(mask)
        labels.append(label)
        # Shading: the colour varies linearly across the object, like a lit surface.
        colour = object_colour(rng, canvas[mask].mean(0))
        ys, xs = np.nonzero(mask)
        slope = rng.uniform(-1.5, 1.5, size=2)
        shade = slope[0] * (xs - cx) + slope[1] * (ys - cy)
        canvas[ys, xs] = colour + shade[:, None] + rng.normal(0, 4, size=(len(xs), 3))
    image = np.clip(canvas, 0, 255).astype(np.uint8)
    masks = np.stack(visible) if visible else np.zeros((0, size, size), dtype=bool)
    boxes = np.stack([mask_to_box(m) for m in visible]) if visible else np.zeros((0, 4), np.float32)
    return Sample(image, boxes.astype(np.float32), np.asarray(labels, dtype=np.int64), masks)


def make_shapes(n: int, seed: int = 0, spec: ShapesSpec | None = None, start: int = 0) -> list[Sample]:
    """Images `start .. start+n-1` of the stream `seed`; image i depends on (seed, i) only."""
    spec = spec or ShapesSpec()
    return [render(np.random.default_rng([seed, i]), spec) for i in range(start, start + n)]


def shapes_splits(
    n_train: int, n_val: int, n_test: int, spec: ShapesSpec | None = None
) -> dict[str, list[Sample]]:
    """Fixed train/val/test splits (each its own stream, so they never share an image).
    Asking for more training images keeps the first ones and adds new ones."""
    return {
        "train": make_shapes(n_train, SPLIT_SEEDS["train"], spec),
        "val": make_shapes(n_val, SPLIT_SEEDS["val"], spec),
        "test": make_shapes(n_test, SPLIT_SEEDS["test"], spec),
    }


def image_tensor(samples: list[Sample]) -> torch.Tensor:
    """(N, 3, H, W) float32 in [0, 1] from equally sized samples."""
    stacked = np.stack([s.image for s in samples])                  # (N, H, W, 3) uint8
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).float().div(255)


def padded_targets(samples: list[Sample], max_objects: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes (N, M, 4) and labels (N, M) padded to M = max_objects; padding labels are -1.
    Fixed shapes let detection batches go through an ordinary DataLoader."""
    boxes = torch.zeros(len(samples), max_objects, 4)
    labels = torch.full((len(samples), max_objects), -1, dtype=torch.long)
    for i, s in enumerate(samples):
        k = len(s.labels)
        if k > max_objects:
            raise ValueError(f"image {i} has {k} objects, more than max_objects={max_objects}")
        boxes[i, :k] = torch.from_numpy(s.boxes)
        labels[i, :k] = torch.from_numpy(s.labels)
    return boxes, labels
