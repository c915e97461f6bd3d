"""The result record every run writes as `result.json` (the recipe contract)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiforge.core.fileio import atomic_write_json


@dataclass
class Result:
    recipe: str
    quick: bool
    seed: int
    seconds: float
    metrics: dict[str, float]
    bar: dict[str, Any]
    passed: bool
    artifacts: list[str] = field(default_factory=list)
    segments: list[float] = field(default_factory=list)
    """Training seconds of each sitting (a resumed run has several); `seconds` is their sum."""

    def save(self, directory: Path) -> Path:
        path = directory / "result.json"
        atomic_write_json(path, asdict(self))
        return path

    @classmethod
    def load(cls, path: Path) -> Result:
        return cls(**json.loads(path.read_text()))
