"""`aiforge predict` and `aiforge export-onnx`: JSON detections, annotated image, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from aiforge.cli import app
from aiforge.core import run_recipe
from aiforge.data.shapes import make_shapes


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pred") / "run"
    run_recipe("vision.detect-yolo", overrides={"epochs": 1, "n_train": 32, "n_val": 8, "n_test": 8},
               out=out, track=False, quiet=True)
    return out


def test_predict_writes_json_and_image(tiny_run: Path, tmp_path: Path) -> None:
    image = tmp_path / "shapes.png"
    Image.fromarray(make_shapes(1, seed=5)[0].image).resize((128, 96)).save(image)
    out = tmp_path / "annotated.png"
    res = CliRunner().invoke(app, ["predict", "vision.detect-yolo", "--run", str(tiny_run),
                                   "--image", str(image), "--out", str(out), "--min-score", "0.0"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["recipe"] == "vision.detect-yolo" and out.is_file()
    for det in result["detections"]:   # boxes come back in the image's own pixels
        x1, y1, x2, y2 = det["box"]
        assert 0 <= x1 <= x2 <= 128 and 0 <= y1 <= y2 <= 96
        assert det["label"] in ("circle", "square", "triangle", "star")


@pytest.mark.parametrize("case", ["missing", "not_image", "wrong_recipe", "no_run"])
def test_predict_bad_input(case: str, tiny_run: Path, tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    Image.fromarray(make_shapes(1)[0].image).save(image)
    recipe, run = "vision.detect-yolo", tiny_run
    if case == "missing":
        image = tmp_path / "missing.png"
    elif case == "not_image":
        image = tmp_path / "notes.txt"
        image.write_text("hello")
    elif case == "wrong_recipe":
        recipe = "vision.detect-frcnn"
    else:
        run = tmp_path / "no-run"
    res = CliRunner().invoke(app, ["predict", recipe, "--run", str(run), "--image", str(image)])
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1


def test_export_onnx_command(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    res = CliRunner().invoke(app, ["export-onnx", "--run", str(tiny_run), "--out", str(out)])
    assert res.exit_code == 0 and out.stat().st_size > 100_000
    res = CliRunner().invoke(app, ["export-onnx", "--run", str(tmp_path), "--out", str(out)])
    assert res.exit_code == 2 and "error:" in res.stderr
