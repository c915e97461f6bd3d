"""`aiforge predict` and `aiforge export`: JSON detections, annotated image, clear errors."""

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


def test_export_command(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    res = CliRunner().invoke(app, ["export", "vision.detect-yolo", "--run", str(tiny_run),
                                   "--out", str(out), "--format", "onnx"])
    assert res.exit_code == 0, res.output
    assert out.stat().st_size > 100_000
    res = CliRunner().invoke(app, ["export", "vision.detect-yolo", "--run", str(tiny_run)])
    assert res.exit_code == 0 and (tiny_run / "model.onnx").is_file(), "default: RUN/model.onnx"
    alias = tmp_path / "alias.onnx"   # the old command name still works
    res = CliRunner().invoke(app, ["export-onnx", "--run", str(tiny_run), "--out", str(alias)])
    assert res.exit_code == 0 and alias.is_file()


@pytest.mark.parametrize("case", ["no_run", "wrong_recipe", "not_exportable", "bad_format"])
def test_export_bad_input(case: str, tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    args = {"no_run": ["vision.detect-yolo", "--run", str(tmp_path / "none")],
            "wrong_recipe": ["vision.detect-frcnn", "--run", str(tiny_run)],
            "not_exportable": ["vision.transfer", "--run", str(tiny_run)],
            "bad_format": ["vision.detect-yolo", "--run", str(tiny_run), "--format", "tflite"]}[case]
    res = CliRunner().invoke(app, ["export", *args, "--out", str(out)])
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1
    assert not out.exists(), "nothing written"
