"""The recipe registry: every roadmap topic is a named, registered experiment."""

from __future__ import annotations

import difflib
import importlib
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from aiforge.core.config import RecipeConfig
from aiforge.core.errors import InputError

if TYPE_CHECKING:
    from aiforge.core.context import RunContext
    from aiforge.core.predictor import Predictor

Op = Literal[">=", "<=", ">", "<"]
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
}


class UnknownRecipeError(InputError):
    """No recipe by that name; the message suggests the nearest names."""


@dataclass(frozen=True)
class Bar:
    """The result a recipe must reach: `metrics[metric] op value`, and every condition in
    `also` as well (an issue's bar may say more than one thing, e.g. a distance *and* a
    class balance). `metric` is the headline number that tables show."""

    metric: str
    op: Op
    value: float
    also: tuple[Bar, ...] = ()

    def passed(self, metrics: dict[str, float]) -> bool:
        headline = self.metric in metrics and _OPS[self.op](metrics[self.metric], self.value)
        return headline and all(extra.passed(metrics) for extra in self.also)

    def __str__(self) -> str:
        return " and ".join([f"{self.metric} {self.op} {self.value:g}", *map(str, self.also)])

    def as_dict(self) -> dict[str, Any]:
        head: dict[str, Any] = {"metric": self.metric, "op": self.op, "value": self.value}
        return {**head, "also": [extra.as_dict() for extra in self.also]} if self.also else head


TrainFn = Callable[[Any, "RunContext"], dict[str, float]]
BuildFn = Callable[[Any], torch.nn.Module]
LoadFn = Callable[["Path"], torch.nn.Module]
PredictorFn = Callable[["Path", dict[str, Any]], "Predictor[Any, Any]"]


@dataclass(frozen=True)
class Recipe:
    """A named experiment: its config, how it trains, what it must reach, and how long it may
    take on 2 CPU cores. `quick` holds the config overrides of the quick setting."""

    name: str
    step: str
    topic: str
    summary: str
    config: type[RecipeConfig]
    train: TrainFn
    bar: Bar
    quick_bar: Bar
    budget_s: float
    quick: dict[str, Any] = field(default_factory=dict)
    build_model: BuildFn | None = None
    load_model: LoadFn | None = None
    """For a model that is not `build_model`'s weights (a LoRA adapter over a base model loaded
    from its own source): rebuilds the model from the run's model folder."""
    predictor: PredictorFn | None = None
    """How the trained model answers requests (`aiforge.core.predictor`): (verified model
    folder, its saved record) -> a `Predictor`. None for a recipe that serves nothing."""
    deterministic: bool = False
    """The result does not depend on the seed (an exact computation): one measurement is the
    whole result, and `aiforge bench` runs it once whatever `--seeds` says."""

    def make_config(self, quick: bool, seed: int, overrides: dict[str, Any]) -> RecipeConfig:
        base = {**(self.quick if quick else {}), "seed": seed}
        return self.config.from_dict({**base, **overrides})

    def bar_for(self, quick: bool) -> Bar:
        return self.quick_bar if quick else self.bar


_REGISTRY: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    if recipe.name in _REGISTRY and _REGISTRY[recipe.name] is not recipe:
        raise ValueError(f"recipe {recipe.name!r} is registered twice")
    _REGISTRY[recipe.name] = recipe
    return recipe


def _discover() -> None:
    # The list of area modules lives outside core, which knows no area by name.
    importlib.import_module("aiforge.recipes")


def all_recipes() -> list[Recipe]:
    _discover()
    return sorted(_REGISTRY.values(), key=lambda r: (r.step, r.name))


def get_recipe(name: str) -> Recipe:
    _discover()
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.4)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownRecipeError(f"unknown recipe {name!r}{hint} (`aiforge list` shows all)")
