"""Typed, validated recipe configs.

Every recipe declares a `RecipeConfig` subclass. Each field carries a docstring (pydantic
reads it as the field's description), a type and, where it matters, a range. A config is
validated once when it is built; `--set key=value` strings go through the same validation,
so "lr=abc" or "epochs=-1" fail before anything runs or is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aiforge.core.errors import InputError


class ConfigError(InputError):
    """A config value, key or file is invalid. The message is one line a user can act on."""


class RecipeConfig(BaseModel):
    """Base class of every recipe's config: frozen, no unknown keys, docstrings as docs."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True, validate_default=True
    )

    seed: int = 0
    """Random seed for every RNG (python, numpy, torch); same seed, same numbers."""

    threads: int = Field(1, ge=1, le=256)
    """torch intra-op threads. 1 is steadiest on a 2-core machine for small models."""

    length_fields: ClassVar[tuple[str, ...]] = ()
    """The fields that say how long training runs (epochs, steps, timesteps). Only these may
    change when a finished run is extended (`aiforge run --resume DIR --set epochs=N`)."""

    @classmethod
    def field_docs(cls) -> list[tuple[str, str, str, str]]:
        """(name, type, default, doc) for every field, in declaration order."""
        rows = []
        for name, field in cls.model_fields.items():
            annotation = field.annotation
            type_name = getattr(annotation, "__name__", None) or str(annotation)
            rows.append((name, str(type_name).replace("typing.", ""), repr(field.default),
                         field.description or ""))
        return rows

    def with_overrides(self, overrides: dict[str, Any]) -> Self:
        """A new config with `overrides` applied and the whole validated again."""
        return type(self).from_dict({**self.model_dump(), **overrides})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            raise ConfigError(
                f"unknown config key {unknown[0]!r}; valid keys: {', '.join(cls.model_fields)}"
            )
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            raise ConfigError(_first_error(err)) from None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Self:
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except json.JSONDecodeError as err:
            raise ConfigError(f"config file {path} is not valid JSON: {err.msg}") from None
        return cls.from_dict(values)


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    if not first["loc"]:  # a check across fields: the whole input would only bury the reason
        return f"invalid config: {first['msg'].removeprefix('Value error, ')}"
    key = ".".join(str(part) for part in first["loc"])
    return f"invalid value {first.get('input')!r} for {key!r}: {first['msg']}"


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """Turn ["lr=0.1", "epochs=3"] into {"lr": "0.1", "epochs": "3"}; values stay strings
    so that the recipe's config validates them with its own types."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out
