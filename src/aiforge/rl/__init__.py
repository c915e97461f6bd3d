"""Step 2: reinforcement learning."""

from aiforge.rl import (  # noqa: F401  (importing a recipe module registers it)
    dqn,
    ppo,
    q_learning,
    recommender,
    reinforce,
    robotics,
    value_iteration,
)
