"""Step 2: reinforcement learning."""

from aiforge.rl import value_iteration  # noqa: F401  (registers recipes)
