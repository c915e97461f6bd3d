"""Step 2 application, robot control: PPO balancing a MuJoCo cart-pole (InvertedPendulum-v5).

The robot is gymnasium's MuJoCo InvertedPendulum: a cart on a rail, driven by one motor
with a continuous force in [-3, 3], must keep a hinged pole upright; +1 per step it stays
up, at most 1000 steps. The observation is the cart position, pole angle and their
velocities from the physics engine (the mujoco wheel ships its own engine; nothing is
downloaded). The learner is `rl.ppo` unchanged (ppo.py) with a diagonal Gaussian policy; only
the settings differ, close to the MuJoCo settings of Schulman et al. (2017, table 3):
gamma 0.99, lambda 0.95, lr 3e-4, 10 epochs of minibatch 64.

The bar is gymnasium's own `reward_threshold` for the task (950 of a possible 1000, from
the environment's registration), measured here by 100 deterministic episodes.
"""

from __future__ import annotations

from pydantic import Field

from aiforge.core import Bar, Recipe, register
from aiforge.rl.common.envs import EnvId
from aiforge.rl.ppo import PPOConfig, build_model, train


class RoboticsPPOConfig(PPOConfig):
    env_id: EnvId = "InvertedPendulum-v5"
    """A gymnasium MuJoCo task with a flat Box observation and Box actions."""
    total_steps: int = Field(150_000, ge=1)
    """Environment steps over all sub-environments."""
    n_envs: int = Field(4, ge=1)
    """Vectorised environments stepped in lock-step."""
    n_steps: int = Field(512, ge=1)
    """Steps per environment per rollout."""
    epochs: int = Field(10, ge=1)
    """Passes over each rollout."""
    minibatch_size: int = Field(64, ge=1)
    """Transitions per gradient step."""
    lr: float = Field(3e-4, gt=0)
    """Adam learning rate at the start (annealed linearly to 0)."""
    gamma: float = Field(0.99, gt=0, le=1)
    """Discount factor."""
    gae_lambda: float = Field(0.95, ge=0, le=1)
    """GAE lambda."""
    target_return: float | None = 950.0
    """Record when the 100-episode training mean first reaches this (None: do not)."""


RECIPE = register(Recipe(
    name="rl.robotics",
    step="2",
    topic="RL application: robot control (MuJoCo)",
    summary="PPO with a Gaussian policy balancing MuJoCo's InvertedPendulum-v5 (continuous force).",
    config=RoboticsPPOConfig,
    train=train,
    bar=Bar("eval_mean_return", ">=", 950.0),
    quick_bar=Bar("eval_mean_return", ">=", 100.0),
    budget_s=600,
    quick={"total_steps": 20_480, "eval_episodes": 10},
    build_model=build_model,
))
