"""A user's own classification images in the ImageFolder layout (as torchvision reads it):

    root/cat/001.png
    root/cat/002.jpg
    root/dog/xyz.jpeg

One folder per class, classes in sorted order (label i is the i-th folder name). Images are
read with Pillow as RGB and resized to `size` x `size`, so any mix of sizes works.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aiforge.core.errors import InputError
from aiforge.data.coco import read_image

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageFolderData:
    x: torch.Tensor      # (N, 3, size, size) float32 in [0, 1]
    y: torch.Tensor      # (N,) int64 labels
    classes: list[str]
    paths: list[Path]


def read_image_folder(root: Path, size: int) -> ImageFolderData:
    """Every image under `root/<class>/`; a missing root, no class folder, an empty class or
    an unreadable image is an `InputError` naming the problem."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"no such image folder: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise InputError(f"{root} has no class sub-folders (expected root/<class>/<image>)")
    images, labels, paths = [], [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in EXTENSIONS)
        if not files:
            raise InputError(f"class folder {root / name} holds no images ({', '.join(EXTENSIONS)})")
        for path in files:
            pixels = read_image(path)                                   # (H, W, 3) uint8
            resized = Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR)
            images.append(np.asarray(resized))
            labels.append(label)
            paths.append(path)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255)
    return ImageFolderData(x, torch.tensor(labels, dtype=torch.long), classes, paths)
