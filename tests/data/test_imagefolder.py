"""ImageFolder loader on a fixture written in that layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aiforge.core.errors import InputError
from aiforge.data.imagefolder import read_image_folder


def write_fixture(root: Path) -> None:
    for name, value, sizes in (("zebra", 200, [(10, 12), (30, 20)]), ("ant", 50, [(16, 16)])):
        (root / name).mkdir(parents=True)
        for i, (w, h) in enumerate(sizes):
            Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(root / name / f"{i}.png")
    (root / "ant" / "notes.txt").write_text("not an image, not listed")


def test_reads_classes_in_sorted_order(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    data = read_image_folder(tmp_path, size=8)
    assert data.classes == ["ant", "zebra"]
    assert data.x.shape == (3, 3, 8, 8) and data.y.tolist() == [0, 1, 1]
    assert abs(float(data.x[0].mean()) - 50 / 255) < 1e-3
    assert abs(float(data.x[2].mean()) - 200 / 255) < 1e-3


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such image folder"):
        read_image_folder(tmp_path / "missing", 8)
    with pytest.raises(InputError, match="no class sub-folders"):
        read_image_folder(tmp_path, 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no images"):
        read_image_folder(tmp_path, 8)
    (tmp_path / "empty" / "bad.png").write_text("garbage")
    with pytest.raises(InputError, match="not a readable image"):
        read_image_folder(tmp_path, 8)
