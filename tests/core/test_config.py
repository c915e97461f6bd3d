import pytest

from aiforge.core import ConfigError, RecipeConfig, all_recipes, get_recipe
from aiforge.core.config import parse_overrides


def test_overrides_are_validated_with_the_recipes_types():
    cfg = get_recipe("vision.cnn-digits").make_config(False, 3, parse_overrides(["lr=0.01", "epochs=2"]))
    assert cfg.lr == 0.01 and cfg.epochs == 2 and cfg.seed == 3


def test_unknown_key_names_the_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown config key 'lrr'; valid keys: .*\blr\b"):
        get_recipe("vision.cnn-digits").make_config(False, 0, {"lrr": "1"})


@pytest.mark.parametrize(("pair", "message"), [
    ("lr=abc", "'lr'.*valid number"),
    ("epochs=0", "'epochs'.*greater than or equal to 1"),
    ("schedule=linear", "'schedule'.*'constant', 'cosine' or 'onecycle'"),
    ("grad_clip=-1", "'grad_clip'.*greater than 0"),
])
def test_bad_values_say_which_and_why(pair, message):
    with pytest.raises(ConfigError, match=message):
        get_recipe("vision.cnn-digits").make_config(False, 0, parse_overrides([pair]))


def test_set_needs_key_equals_value():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["epochs"])


def test_every_field_of_every_recipe_has_a_docstring():
    for recipe in all_recipes():
        undocumented = [name for name, _, _, doc in recipe.config.field_docs() if not doc]
        assert not undocumented, f"{recipe.name}: {undocumented}"


def test_every_quick_setting_is_a_valid_config():
    for recipe in all_recipes():
        recipe.make_config(True, 0, {})


def test_config_round_trips_through_json(tmp_path):
    recipe = get_recipe("vision.cnn-digits")
    cfg = recipe.make_config(True, 7, {"lr": "0.02"})
    cfg.save(tmp_path / "c.json")
    assert recipe.config.load(tmp_path / "c.json") == cfg


def test_a_check_across_fields_names_its_reason_not_the_whole_input():
    from pydantic import model_validator

    class Window(RecipeConfig):
        snippet: int = 8
        """Characters per snippet."""
        block: int = 16
        """Context length."""

        @model_validator(mode="after")
        def _fits(self) -> "Window":
            if self.snippet > self.block:
                raise ValueError(f"snippet {self.snippet} exceeds block {self.block}")
            return self

    with pytest.raises(ConfigError) as err:
        Window.from_dict({"snippet": 32})
    assert str(err.value) == "invalid config: snippet 32 exceeds block 16"
