"""The image sets the GAN and diffusion recipes train on, behind one small interface.

- ``digits`` (default): scikit-learn's handwritten digits at their native 8x8, grey, 10
  classes, with the fixed train/test split of `aiforge.data.digits`.
- ``shapes``: 32x32 colour images from `aiforge.data.shapes` with exactly one object each
  (circle, square, triangle or star; the class is the shape) over a textured background.
  Generated here, so they work offline and are the same on every machine.
- ``imagefolder``: a user's own images in the ImageFolder layout (`root/<class>/<image>`),
  read as RGB and resized to `image_size`. One image in five of every class (in sorted file
  order) is held out as the evaluation set; the generator trains on the rest.

A config names the set with `dataset` (and `data_dir` for a folder); `num_classes` and
`image_size` are derived from it when the config is built, so a saved model's config alone
rebuilds its network, and a missing folder fails before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from aiforge.core import RecipeConfig
from aiforge.core.errors import InputError
from aiforge.data.digits import digits_splits
from aiforge.data.shapes import CLASSES as SHAPE_CLASSES
from aiforge.data.shapes import SPLIT_SEEDS, ShapesSpec, image_tensor, make_shapes

DatasetName = Literal["digits", "shapes", "imagefolder"]
NATIVE_SIZE = {"digits": 8, "shapes": 32, "imagefolder": 32}
SHAPES_SPEC = ShapesSpec(image_size=32, min_objects=1, max_objects=1, min_size=12, max_size=28)
SHAPES_TRAIN, SHAPES_TEST = 4000, 400
HOLD_OUT_EVERY = 5  # ImageFolder: every 5th image of a class is kept for evaluation


class ImageDataConfig(RecipeConfig):
    """Config fields of a recipe that can train on any of the image sets above."""

    dataset: DatasetName = "digits"
    """'digits' (8x8 grey, the bars are measured on it), 'shapes' (32x32 colour, one shape
    per image) or 'imagefolder' (your images under `data_dir`)."""
    data_dir: str | None = None
    """Root of an ImageFolder (`root/<class>/<image>`); only with dataset='imagefolder'."""
    image_size: int | None = Field(None, ge=8, le=64)
    """Side of the square images, a multiple of 4; None takes the set's native size (digits
    8, shapes 32, ImageFolder 32). Digits and shapes only come at their native size."""
    num_classes: int | None = Field(None, ge=1, le=1000)
    """Classes of the set; None derives it from the set (10, 4, or the folder's class count)."""

    @model_validator(mode="before")
    @classmethod
    def _derive_size_and_classes(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        values = dict(values)
        dataset = values.get("dataset", "digits")
        data_dir = values.get("data_dir")
        if (dataset == "imagefolder") != (data_dir not in (None, "", "None")):
            raise ValueError("data_dir is needed with dataset='imagefolder', and only with it")
        if values.get("image_size") in (None, "None"):
            values["image_size"] = NATIVE_SIZE.get(dataset, 8)
        if values.get("num_classes") in (None, "None"):
            values["num_classes"] = (len(folder_classes(Path(data_dir))) if dataset == "imagefolder"
                                     else {"digits": 10, "shapes": len(SHAPE_CLASSES)}.get(dataset, 10))
        return values

    @model_validator(mode="after")
    def _size_fits(self) -> ImageDataConfig:
        assert self.image_size is not None
        if self.image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {self.image_size}")
        if self.dataset != "imagefolder" and self.image_size != NATIVE_SIZE[self.dataset]:
            raise ValueError(f"{self.dataset} comes at {NATIVE_SIZE[self.dataset]}x"
                             f"{NATIVE_SIZE[self.dataset]} only")
        return self

    @property
    def channels(self) -> int:
        return 1 if self.dataset == "digits" else 3

    @property
    def classes(self) -> int:
        assert self.num_classes is not None
        return self.num_classes

    @property
    def size(self) -> int:
        assert self.image_size is not None
        return self.image_size


def folder_classes(root: Path) -> list[str]:
    """The class sub-folders of an ImageFolder root, sorted (label i = i-th name)."""
    if not root.is_dir():
        raise ValueError(f"no such image folder: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{root} has no class sub-folders (expected root/<class>/<image>)")
    return classes


@dataclass(frozen=True, eq=False)  # eq=False: hashed by identity, so caches can key on it
class ImageSet:
    """Training, validation and held-out evaluation images (N, C, H, W) in [0, 1] with
    integer labels."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]


def shapes_set() -> ImageSet:
    """One-object shapes: 4,000 training, 400 validation and 400 test images, each split its
    own stream."""
    def split(name: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        samples = make_shapes(n, SPLIT_SEEDS[name], SHAPES_SPEC)
        return image_tensor(samples), torch.tensor([int(s.labels[0]) for s in samples])
    return ImageSet("shapes", *split("train", SHAPES_TRAIN), *split("val", SHAPES_TEST),
                    *split("test", SHAPES_TEST), SHAPE_CLASSES)


def folder_set(root: Path, size: int) -> ImageSet:
    """A user's ImageFolder; every `HOLD_OUT_EVERY`-th image of each class is held out."""
    from aiforge.data.imagefolder import read_image_folder

    data = read_image_folder(root, size)
    held = torch.zeros(len(data.y), dtype=torch.bool)
    for c in range(len(data.classes)):
        idx = torch.nonzero(data.y == c).flatten()
        if len(idx) < 2 * HOLD_OUT_EVERY:
            raise InputError(f"class {data.classes[c]!r} of {root} has {len(idx)} images; the "
                             f"generative recipes need at least {2 * HOLD_OUT_EVERY} per class")
        held[idx[HOLD_OUT_EVERY - 1::HOLD_OUT_EVERY]] = True
    # a folder has no third split: the held-out images serve as validation too
    return ImageSet(f"imagefolder:{root}", data.x[~held], data.y[~held], data.x[held],
                    data.y[held], data.x[held], data.y[held], tuple(data.classes))


def load_image_set(cfg: ImageDataConfig) -> ImageSet:
    """The image set a config names."""
    if cfg.dataset == "digits":
        splits = digits_splits()
        return ImageSet("digits", splits["train"].x, splits["train"].y, splits["val"].x,
                        splits["val"].y, splits["test"].x, splits["test"].y,
                        tuple(str(d) for d in range(10)))
    if cfg.dataset == "shapes":
        return shapes_set()
    assert cfg.data_dir is not None
    found = folder_set(Path(cfg.data_dir), cfg.size)
    if len(found.classes) != cfg.classes:
        raise InputError(f"{cfg.data_dir} holds {len(found.classes)} classes, the config "
                         f"{cfg.classes}")
    return found
