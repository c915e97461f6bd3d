"""Plumbing every RL recipe shares: environments, episode bookkeeping, evaluation, replay
and learning-curve figures. The algorithms themselves (their losses and update rules) stay
in their own files, readable top to bottom."""

from aiforge.rl.common.envs import EnvError, make_env, make_vector_env, space_dims
from aiforge.rl.common.evaluation import EpisodeLog, evaluate_policy
from aiforge.rl.common.replay import ReplayBuffer

__all__ = [
    "EnvError", "EpisodeLog", "ReplayBuffer", "evaluate_policy", "make_env", "make_vector_env",
    "space_dims",
]
