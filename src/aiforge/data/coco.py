"""COCO JSON for detection and instance segmentation: write annotated images, read a user's.

The format (cocodataset.org/#format-data): `images` (id, file_name, width, height),
`categories` (id, name) and `annotations` (image_id, category_id, bbox as [x, y, w, h] in
pixels, area, iscrowd, segmentation as polygons or run-length encoding). Masks go through
pycocotools, the reference implementation of COCO's RLE, so the files read and write
exactly as the COCO tools do.

Reading gives the same `Sample` records the shapes generator makes (0-based labels in the
order of the category ids), so every detector here trains on either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from aiforge.core.errors import InputError
from aiforge.data.shapes import Sample


@dataclass(frozen=True)
class CocoDataset:
    samples: list[Sample]
    categories: list[str]   # label i is categories[i]
    file_names: list[str]


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """Compressed RLE of an (H, W) bool mask, with `counts` as text so it fits in JSON."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))  # COCO RLE runs column-major
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask from polygons ([[x1, y1, x2, y2, ...], ...]), uncompressed RLE
    (counts a list of ints) or compressed RLE (counts a string)."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):  # polygons: one object may have several parts
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), str):
        rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
    else:
        raise InputError(f"segmentation is neither polygons nor RLE: {str(segmentation)[:60]}")
    return mask_utils.decode(rle).astype(bool)


def to_coco(samples: list[Sample], categories: list[str] | tuple[str, ...],
            file_names: list[str]) -> dict[str, Any]:
    """The COCO dictionary of `samples`; category ids are 1-based, as in COCO itself."""
    images, annotations = [], []
    for image_id, (sample, name) in enumerate(zip(samples, file_names, strict=True), start=1):
        height, width = sample.image.shape[:2]
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        for box, label, mask in zip(sample.boxes, sample.labels, sample.masks, strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(label) + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float(mask.sum()), "iscrowd": 0,
                "segmentation": encode_mask(mask),
            })
    cats = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(categories)]
    return {"images": images, "annotations": annotations, "categories": cats}


def write_coco(samples: list[Sample], folder: Path, categories: list[str] | tuple[str, ...]) -> Path:
    """Write `folder/images/000000.png ...` and `folder/annotations.json`; returns the JSON path."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    names = [f"images/{i:06d}.png" for i in range(len(samples))]
    for sample, name in zip(samples, names, strict=True):
        Image.fromarray(sample.image).save(folder / name)
    path = folder / "annotations.json"
    path.write_text(json.dumps(to_coco(samples, categories, names)))
    return path


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; a missing or non-image file is an `InputError`."""
    if not path.is_file():
        raise InputError(f"no such image file: {path}")
    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"))  # a writable copy, as torch.from_numpy wants
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(f"{path} is not a readable image: {err}") from None


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"no such COCO annotation file: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} is not COCO JSON: no top-level object")
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if missing:
        raise InputError(f"{path} is not COCO JSON: missing {missing}")
    return data


def _category_names(data: dict[str, Any], path: Path) -> dict[int, str]:
    """{category id: name}; a file without categories, or with a malformed one, is an error."""
    try:
        names = {int(c["id"]): str(c["name"]) for c in data["categories"]}
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{path}: every category needs an integer 'id' and a 'name'") from None
    if not names:
        raise InputError(f"{path} defines no categories")
    return names


def coco_categories(path: Path) -> list[str]:
    """The category names of a COCO annotation file, in the order of their ids (label i is
    the i-th name), without reading any image: a cheap check of a user's file."""
    path = Path(path)
    names = _category_names(_load_json(path), path)
    return [names[i] for i in sorted(names)]


def read_coco(path: Path, image_root: Path | None = None) -> CocoDataset:
    """Read a COCO annotation file and its images (looked up under `image_root`, by default
    the JSON's folder). Crowd regions (`iscrowd: 1`) are skipped: they mark groups that no
    single box should match, and the detectors here train on single instances."""
    path = Path(path)
    data = _load_json(path)
    root = Path(image_root) if image_root is not None else path.parent
    names_by_id = _category_names(data, path)
    cat_ids = sorted(names_by_id)
    label_of = {cat_id: i for i, cat_id in enumerate(cat_ids)}
    by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in data["annotations"]:
        if not ann.get("iscrowd", 0):
            by_image.setdefault(int(ann["image_id"]), []).append(ann)

    samples, file_names = [], []
    for info in data["images"]:
        image = read_image(root / info["file_name"])
        height, width = image.shape[:2]
        anns = by_image.get(int(info["id"]), [])
        boxes, labels, masks = [], [], []
        for ann in anns:
            if int(ann["category_id"]) not in label_of:
                raise InputError(f"{path}: annotation {ann.get('id')} has unknown category "
                                 f"{ann['category_id']}")
            x, y, w, h = (float(v) for v in ann["bbox"])
            boxes.append([x, y, x + w, y + h])
            labels.append(label_of[int(ann["category_id"])])
            if "segmentation" in ann:
                masks.append(decode_segmentation(ann["segmentation"], height, width))
        if masks and len(masks) != len(anns):
            raise InputError(f"{path}: image {info['file_name']} has annotations with and "
                             f"without segmentation")
        samples.append(Sample(
            image=image,
            boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            labels=np.asarray(labels, dtype=np.int64),
            masks=np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool),
        ))
        file_names.append(str(info["file_name"]))
    return CocoDataset(samples, [names_by_id[i] for i in cat_ids], file_names)
