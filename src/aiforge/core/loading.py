"""Rebuild any recipe's trained model from its run alone.

A run's `model/` folder holds the recipe name, the resolved config and safetensors
weights. `load_model` takes a run folder, that model folder, or a tracking URI
(`runs:/RUN_ID/model`, `models:/NAME@alias`, `models:/NAME/VERSION`), rebuilds the network
from the recipe's `build_model(config)` and loads the weights. Nothing is unpickled and no
training state is needed; serving, export and monitoring stand on this.

Before anything in a model folder is read, its files are checked against the SHA-256 sums
the run recorded (`model_files`); `load_predictor`, the serving path, refuses a folder
without them.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model as load_safetensors

from aiforge.core.context import MODEL_DIR, MODEL_META
from aiforge.core.errors import InputError
from aiforge.core.model_files import verify_model_files
from aiforge.core.predictor import Predictor
from aiforge.core.registry import get_recipe
from aiforge.core.tracking import download_model_dir


def resolve_model_dir(source: str | Path, cache: Path | None = None) -> Path:
    """The local folder holding `aiforge-model.json` for a path or a tracking URI."""
    text = str(source)
    if text.startswith(("runs:/", "models:/")):
        dest = cache or Path(tempfile.mkdtemp(prefix="aiforge-model-"))
        try:
            folder = download_model_dir(text, dest)
        except Exception as err:  # mlflow raises several types for a missing run or alias
            raise InputError(f"cannot fetch {text} from tracking: {err}") from None
    else:
        folder = Path(source)
        if not folder.exists():
            raise InputError(f"no such run or model folder: {folder}")
    if (folder / MODEL_DIR / MODEL_META).is_file():
        folder = folder / MODEL_DIR
    if not (folder / MODEL_META).is_file():
        raise InputError(f"{source} holds no saved model ({MODEL_DIR}/{MODEL_META} missing)")
    return folder


def load_model(source: str | Path, device: str = "cpu") -> torch.nn.Module:
    """The trained model of a run, in eval mode."""
    folder = resolve_model_dir(source)
    verify_model_files(folder, required=False)
    meta = json.loads((folder / MODEL_META).read_text())
    recipe = get_recipe(meta["recipe"])
    if recipe.load_model is not None:
        return recipe.load_model(folder).to(device).eval()
    if recipe.build_model is None:
        raise InputError(f"recipe {recipe.name!r} saves no rebuildable model")
    model = recipe.build_model(recipe.config.from_dict(meta["config"]))
    try:
        load_safetensors(model, str(folder / "model.safetensors"), strict=True, device=device)
    except (SafetensorError, OSError, RuntimeError) as err:
        raise InputError(f"cannot load weights from {folder}: {err}") from None
    return model.to(device).eval()


def load_model_config(source: str | Path) -> dict[str, object]:
    """The saved `{recipe, config, ...}` record of a model folder."""
    meta: dict[str, object] = json.loads((resolve_model_dir(source) / MODEL_META).read_text())
    return meta


def load_predictor(source: str | Path) -> Predictor[Any, Any]:
    """The predictor of a run's trained model (see `aiforge.core.predictor`). The model
    folder's files must match the checksums recorded when the run saved them."""
    folder = resolve_model_dir(source)
    verify_model_files(folder, required=True)
    meta = json.loads((folder / MODEL_META).read_text())
    recipe = get_recipe(meta["recipe"])
    if recipe.predictor is None:
        raise InputError(f"recipe {recipe.name!r} declares no predictor: it answers no requests")
    return recipe.predictor(folder, meta)
