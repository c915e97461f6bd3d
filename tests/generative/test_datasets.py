"""Image sets beyond the digits: config derivation, the ImageFolder hold-out, colour grids,
the generic feature-space FD, and DCGAN / DDPM / `aiforge sample` on an ImageFolder the test
writes (32x32 colour, two classes)."""

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from aiforge.cli import app
from aiforge.core import ConfigError, InputError, get_recipe, load_model, run_recipe
from aiforge.generative import dcgan, ddpm
from aiforge.generative.data import image_grid
from aiforge.generative.datasets import HOLD_OUT_EVERY, ImageDataConfig, folder_set, shapes_set
from aiforge.generative.image_eval import FeatureSpace, feature_space, held_out_halves


def _write_folder(root, per_class=20, size=24):
    """Two classes a colour classifier can tell apart: red squares and blue discs on grey."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:size, 0:size]
    for name, colour in (("discs", (30, 60, 220)), ("squares", (220, 40, 30))):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = (128 + rng.integers(0, 20, (size, size, 3))).astype(np.uint8)
            cy, cx = rng.integers(8, size - 8, 2)
            r = int(rng.integers(4, 7))
            if name == "discs":
                inside = (ys - cy) ** 2 + (xs - cx) ** 2 <= r * r
            else:
                inside = (abs(ys - cy) <= r) & (abs(xs - cx) <= r)
            img[inside] = colour
            Image.fromarray(img).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return _write_folder(tmp_path_factory.mktemp("imgs") / "data")


def test_config_derives_size_classes_and_channels_from_the_data_set(folder):
    digits = ImageDataConfig()
    assert (digits.size, digits.classes, digits.channels) == (8, 10, 1)
    shapes = ImageDataConfig(dataset="shapes")
    assert (shapes.size, shapes.classes, shapes.channels) == (32, 4, 3)
    user = ImageDataConfig.from_dict({"dataset": "imagefolder", "data_dir": str(folder)})
    assert (user.size, user.classes, user.channels) == (32, 2, 3)
    # a saved config keeps the derived values, so a model reloads without its folder
    assert ImageDataConfig.from_dict(user.model_dump() | {"data_dir": "/gone"}).classes == 2


@pytest.mark.parametrize(("values", "message"), [
    ({"dataset": "imagefolder"}, "data_dir is needed"),
    ({"data_dir": "/tmp"}, "data_dir is needed"),
    ({"dataset": "imagefolder", "data_dir": "/no/such/folder"}, "no such image folder"),
    ({"dataset": "shapes", "image_size": 16}, "32x32 only"),
    ({"dataset": "digits", "image_size": 10}, "multiple of 4"),
])
def test_config_rejects_inconsistent_data_settings(values, message):
    with pytest.raises(ConfigError, match=message):
        get_recipe("generative.dcgan").make_config(False, 0, values)


def test_folder_holds_out_every_fifth_image_of_each_class(folder, tmp_path):
    data = folder_set(folder, 16)
    assert data.train_x.shape == (32, 3, 16, 16) and data.test_x.shape == (8, 3, 16, 16)
    assert torch.equal(data.test_y, torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]))
    assert data.classes == ("discs", "squares") and 0 <= data.train_x.min() <= data.train_x.max() <= 1
    small = _write_folder(tmp_path / "small", per_class=2 * HOLD_OUT_EVERY - 1)
    with pytest.raises(InputError, match="at least 10 per class"):
        folder_set(small, 16)


def test_colour_grid_keeps_rgb_and_grey_grid_stays_2d():
    colour = torch.zeros(3, 3, 4, 4)
    colour[:, 0] = 1.0                                          # pure red tiles
    grid = image_grid(colour, nrow=2)
    assert grid.shape == (9, 9, 3) and grid[0, 0].tolist() == [1.0, 0.0, 0.0]
    assert image_grid(torch.zeros(3, 1, 8, 8), nrow=3).shape == (8, 26)


def test_halves_split_every_class_in_two():
    a, b = held_out_halves(torch.tensor([0, 0, 0, 1, 1, 1, 1]))
    assert a.tolist() == [True, False, True, True, False, True, False] and torch.equal(b, ~a)


def test_folder_feature_space_ranks_real_images_above_noise(folder):
    data = folder_set(folder, 16)
    space = feature_space(data)
    assert isinstance(space, FeatureSpace) and feature_space(data) is space   # built once
    assert space.accuracy == 1.0                       # red squares vs blue discs
    noise = torch.rand(40, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    # held-out half A against half B (the floor) is far closer than noise; images the net was
    # trained on are not used here: their features are spread wider than held-out ones
    assert space.fd(space.half_a) < space.fd(noise) / 10
    scores = space.score(data.train_x, data.train_y)
    assert scores["label_agreement"] == 1.0 and scores["classes_covered"] == 2


@pytest.fixture(scope="module")
def folder_runs(folder, tmp_path_factory):
    """A few steps of DCGAN and DDPM on the folder: the pipeline, not the quality."""
    common = {"dataset": "imagefolder", "data_dir": str(folder), "image_size": 16, "n_generate": 178}
    runs = {}
    for name, overrides in (("generative.dcgan", {"steps": 30, "width": 8}),
                            ("generative.ddpm", {"epochs": 2, "width": 8, "timesteps": 20,
                                                 "sample_steps": 5, "eval_ancestral": True})):
        out = tmp_path_factory.mktemp(name.split(".")[1])
        runs[name] = out, run_recipe(name, quick=True, out=out, quiet=True, track=False,
                                     overrides={**common, **overrides})
    return runs


@pytest.mark.parametrize("recipe", ["generative.dcgan", "generative.ddpm"])
def test_recipes_train_and_score_on_an_image_folder(folder_runs, recipe):
    out, result = folder_runs[recipe]
    m = result.metrics
    assert {"imagefolder_fd", "fd_floor", "fd_ceiling", "label_agreement"} <= set(m)
    assert "digits_fd" not in m and not result.passed   # the bar is measured on the digits
    assert np.isfinite(m["imagefolder_fd"]) and m["fd_floor"] < m["fd_ceiling"]
    model = load_model(out)
    if recipe == "generative.dcgan":
        images = dcgan.generate(model, 4, labels=torch.tensor([0, 1, 0, 1]),
                                generator=torch.Generator().manual_seed(0))
        assert images.shape == (4, 3, 16, 16)
    else:
        assert model.inp.in_channels == 3 and model.classes == 2


def test_sample_command_draws_colour_grids_and_checks_the_run_classes(folder_runs, tmp_path):
    for recipe in ("generative.dcgan", "generative.ddpm"):
        out, _ = folder_runs[recipe]
        png = tmp_path / f"{recipe}.png"
        ok = CliRunner().invoke(app, ["sample", recipe, "--run", str(out), "--n", "6", "--class", "1",
                                      "--out", str(png)])
        assert ok.exit_code == 0, ok.output
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        bad = CliRunner().invoke(app, ["sample", recipe, "--run", str(out), "--class", "2"])
        assert bad.exit_code == 2 and "--class must lie in 0..1" in bad.output


def test_generate_draws_colour_images_from_a_colour_unet():
    model = ddpm.build_model(ddpm.DDPMConfig(dataset="shapes", width=8))
    sched = ddpm.make_schedule("cosine", 20)
    a = ddpm.generate(model, sched, 2, labels=torch.tensor([0, 3]), steps=4, size=32,
                      generator=torch.Generator().manual_seed(0))
    assert a.shape == (2, 3, 32, 32)


@pytest.mark.slow
def test_shapes_set_and_its_feature_space():
    data = shapes_set()
    assert data.train_x.shape == (4000, 3, 32, 32) and set(data.train_y.tolist()) == {0, 1, 2, 3}
    space = feature_space(data)
    assert space.accuracy > 0.9
    anchors = space.anchors()
    assert anchors["fd_floor"] < anchors["fd_ceiling"] / 3
