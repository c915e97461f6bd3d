"""Input a recipe can only check when it reads it is refused as cleanly as a bad flag."""

from dataclasses import replace

import pytest

from aiforge.core import Bar, InputError, RecipeConfig, get_recipe, register, run_recipe
from aiforge.core import registry as registry_module


def _missing_data(cfg, ctx):
    (ctx.out / "half-written.txt").write_text("partial")
    raise InputError("data file /nowhere.csv not found")


@pytest.fixture
def refusing_recipe():
    recipe = register(replace(get_recipe("rl.value-iteration"), name="test.refuses", train=_missing_data,
                              config=RecipeConfig, quick={}, bar=Bar("x", ">=", 1.0),
                              quick_bar=Bar("x", ">=", 1.0)))
    yield recipe
    registry_module._REGISTRY.pop(recipe.name)


def test_a_refused_run_leaves_no_folder_it_made(tmp_path, refusing_recipe):
    out = tmp_path / "new" / "run"
    with pytest.raises(InputError, match="not found"):
        run_recipe(refusing_recipe.name, out=out, track=False, quiet=True)
    assert not out.exists()


def test_a_refused_run_leaves_an_empty_folder_empty(tmp_path, refusing_recipe):
    out = tmp_path / "run"
    out.mkdir()
    with pytest.raises(InputError):
        run_recipe(refusing_recipe.name, out=out, track=False, quiet=True)
    assert out.is_dir() and not any(out.iterdir())
