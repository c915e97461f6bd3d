"""What every area shares: configs, the recipe registry, the training loop, checkpoints,
tracking, seeding, devices, progress, plots and result records. Knows no area by name."""

from aiforge.core.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from aiforge.core.config import ConfigError, RecipeConfig
from aiforge.core.context import RunContext
from aiforge.core.errors import InputError
from aiforge.core.loading import load_model
from aiforge.core.registry import Bar, Recipe, all_recipes, get_recipe, register
from aiforge.core.result import Result
from aiforge.core.runner import run_recipe
from aiforge.core.seeding import seed_everything
from aiforge.core.train import SupervisedConfig, fit

__all__ = [
    "Bar", "CheckpointError", "ConfigError", "InputError", "Recipe", "RecipeConfig", "Result",
    "RunContext", "SupervisedConfig", "all_recipes", "fit", "get_recipe", "latest_checkpoint",
    "load_checkpoint", "load_model", "register", "run_recipe", "save_checkpoint", "seed_everything",
]
