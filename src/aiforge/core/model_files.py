"""SHA-256 sums of a saved model's files, recorded when a run finishes and checked before
anything loads them.

A model folder is what serving, export and monitoring trust, and it may travel (an MLflow
artifact store, a container image, a colleague's disk). `FILES` lists every file in it with
its size and SHA-256; a file changed, truncated, added or removed after the run refuses to
load, naming the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from aiforge.core.errors import InputError
from aiforge.core.fileio import atomic_write_json

FILES = "files.sha256.json"


class ModelFilesError(InputError):
    """A model folder's files do not match the sums recorded when it was saved."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _listing(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != FILES)


def record_model_files(folder: Path) -> Path:
    """Write `folder/files.sha256.json`: size and SHA-256 of every file under `folder`."""
    files = {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
             for p in _listing(folder)}
    atomic_write_json(folder / FILES, {"files": files})
    return folder / FILES


def verify_model_files(folder: Path, *, required: bool) -> bool:
    """Check every file under `folder` against its recorded sum. Returns False when no sums
    were recorded (a model saved before they were) and `required` is off; raises
    `ModelFilesError` on any mismatch, or on missing sums when `required`."""
    record = folder / FILES
    if not record.is_file():
        if required:
            raise ModelFilesError(f"{folder} records no checksums ({FILES} missing); refusing to "
                                  "load it (re-run the recipe, or re-save the model with aiforge)")
        return False
    try:
        expected = json.loads(record.read_text())["files"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ModelFilesError(f"{record} is unreadable; refusing to load {folder}") from None
    present = {str(p.relative_to(folder)) for p in _listing(folder)}
    for extra in sorted(present - set(expected)):
        raise ModelFilesError(f"{folder / extra} was added after the model was saved; refusing to load")
    for name, want in expected.items():
        path = folder / name
        if not path.is_file():
            raise ModelFilesError(f"{path} is missing; refusing to load {folder}")
        if path.stat().st_size != want["bytes"] or _sha256(path) != want["sha256"]:
            raise ModelFilesError(f"{path} does not match the SHA-256 recorded when it was saved; "
                                  "refusing to load it")
    return True
