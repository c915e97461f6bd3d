"""Checkpoints: atomic, resumable, and loaded without unpickling anything.

A checkpoint is a directory `checkpoints/step-000003/` holding

    model.safetensors   the model's weights (safetensors: raw tensors, no code)
    state.safetensors   every tensor of the training state (optimizer moments, RNG, ...)
    state.json          the rest of the training state as plain JSON, with references
                        into state.safetensors where a tensor stood
    config.json         the resolved recipe config the run was started with
    manifest.json       size and SHA-256 of each file above, written last

The directory is assembled under a temporary name and renamed into place, so a crash
leaves either the whole checkpoint or none of it. The manifest catches what a rename
cannot: a file truncated or changed later. Older checkpoints are kept (`keep`) so that a
damaged newest one still leaves a good one to resume from.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

from aiforge.core.errors import InputError
from aiforge.core.fileio import fsync_dir

PREFIX = "step-"
FILES = ("model.safetensors", "state.safetensors", "state.json", "config.json")


class CheckpointError(InputError):
    """A checkpoint is missing, truncated or corrupt. The message names it."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    state: dict[str, Any]
    config: dict[str, Any]

    def load_weights(self, model: torch.nn.Module) -> None:
        try:
            missing, unexpected = load_model(model, self.path / "model.safetensors", strict=False)
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"cannot read weights in {self.path}: {err}") from None
        if missing or unexpected:
            raise CheckpointError(
                f"weights in {self.path} do not fit the model: missing {sorted(missing)[:3]}, "
                f"unexpected {sorted(unexpected)[:3]}"
            )


# --- nested state <-> (plain JSON, flat tensors) ------------------------------------------

def split_tensors(obj: Any, tensors: dict[str, torch.Tensor], path: str = "s") -> Any:
    """Replace every tensor in a nested structure by a reference and collect it in `tensors`.

    Dict keys that are not strings (optimizer states are keyed by int) and tuples are kept
    as tagged lists so that the round trip gives back the same types.
    """
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: split_tensors(v, tensors, f"{path}.{k}") for k, v in obj.items()}
        return {"__items__": [[k, split_tensors(v, tensors, f"{path}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [split_tensors(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [split_tensors(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a value of type {type(obj).__name__} at {path}")


def join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__items__" in obj:
            return {k: join_tensors(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(join_tensors(v, tensors) for v in obj["__tuple__"])
        return {k: join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [join_tensors(v, tensors) for v in obj]
    return obj


# --- writing ------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with path.open("rb+") as handle:
        handle.flush()
        os.fsync(handle.fileno())


def save_checkpoint(
    directory: Path,
    step: int,
    model: torch.nn.Module,
    state: dict[str, Any],
    config: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write checkpoint `step` under `directory` atomically; keep the newest `keep`."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{PREFIX}{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=directory))
    try:
        save_model(model, str(tmp / "model.safetensors"))
        tensors: dict[str, torch.Tensor] = {}
        plain = split_tensors(state, tensors)
        save_file(tensors, str(tmp / "state.safetensors"))
        (tmp / "state.json").write_text(json.dumps(plain))
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        manifest = {}
        for name in FILES:
            _fsync_file(tmp / name)
            manifest[name] = {"bytes": (tmp / name).stat().st_size, "sha256": _sha256(tmp / name)}
        (tmp / "manifest.json").write_text(json.dumps({"step": step, "files": manifest}))
        _fsync_file(tmp / "manifest.json")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


# --- reading ------------------------------------------------------------------------------

def list_checkpoints(directory: Path) -> list[Path]:
    """Finished checkpoints under `directory`, oldest first (temporary ones are ignored)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def verify_checkpoint(path: Path) -> None:
    """Raise CheckpointError unless every file matches the manifest."""
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise CheckpointError(f"checkpoint {path} is incomplete: no manifest.json")
    try:
        manifest = json.loads(manifest_path.read_text())["files"]
    except (json.JSONDecodeError, KeyError):
        raise CheckpointError(f"checkpoint {path} is corrupt: unreadable manifest.json") from None
    for name in FILES:
        file = path / name
        expected = manifest.get(name)
        if expected is None or not file.is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {name} is missing")
        size = file.stat().st_size
        if size != expected["bytes"]:
            raise CheckpointError(
                f"checkpoint {path} is corrupt: {name} has {size} bytes, expected {expected['bytes']}"
            )
        if _sha256(file) != expected["sha256"]:
            raise CheckpointError(f"checkpoint {path} is corrupt: {name} fails its checksum")


def load_checkpoint(path: Path) -> Checkpoint:
    """Load and verify one checkpoint directory."""
    if not path.is_dir():
        raise CheckpointError(f"checkpoint not found: {path}")
    verify_checkpoint(path)
    try:
        tensors = load_file(str(path / "state.safetensors"))
        plain = json.loads((path / "state.json").read_text())
        config = json.loads((path / "config.json").read_text())
        step = int(json.loads((path / "manifest.json").read_text())["step"])
    except (SafetensorError, OSError, json.JSONDecodeError, KeyError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt: {err}") from None
    return Checkpoint(path=path, step=step, state=join_tensors(plain, tensors), config=config)


def latest_checkpoint(directory: Path) -> Checkpoint | None:
    """The newest checkpoint, verified. A damaged newest one raises, naming the newest good
    one so that the user can resume from it explicitly; nothing is deleted."""
    found = list_checkpoints(directory)
    if not found:
        return None
    try:
        return load_checkpoint(found[-1])
    except CheckpointError as err:
        for older in reversed(found[:-1]):
            try:
                verify_checkpoint(older)
            except CheckpointError:
                continue
            raise CheckpointError(f"{err}; the previous good checkpoint is {older}") from None
        raise
