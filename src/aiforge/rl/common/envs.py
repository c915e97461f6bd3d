"""Making gymnasium environments with one clear error for a bad id, and vectorising them.

Vector environments use gymnasium's SAME_STEP autoreset: when a sub-environment ends, the
step returns the first observation of its next episode and puts the last observation of the
finished one in `infos["final_obs"]`. That is what a truncated episode needs to bootstrap
V(s_T) (Pardo et al., 2018, "Time limits in reinforcement learning").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import gymnasium as gym
import numpy as np
from pydantic import AfterValidator

from aiforge.core.errors import InputError


class EnvError(InputError):
    """The environment id is unknown or the environment cannot be built."""


def registered_env_id(env_id: str) -> str:
    """Config-time check that gymnasium knows `env_id` (builds nothing), so that a bad id
    fails while the config is validated, before a run folder is written."""
    try:
        gym.spec(env_id)
    except gym.error.Error as err:
        raise ValueError(f"unknown gymnasium environment: {err}") from None
    return env_id


EnvId = Annotated[str, AfterValidator(registered_env_id)]
"""A config field type: a gymnasium environment id, checked against the registry."""


def make_env(env_id: str, render_mode: str | None = None, **kwargs: object) -> gym.Env:
    """`gym.make` that turns gymnasium's several error types into one `EnvError` line."""
    try:
        return gym.make(env_id, render_mode=render_mode, **kwargs)
    except gym.error.Error as err:
        close = [k for k in gym.registry if k.lower().split("-")[0] == env_id.lower().split("-")[0]]
        hint = f"; registered versions: {', '.join(sorted(close))}" if close else ""
        raise EnvError(f"cannot make environment {env_id!r}: {err}{hint}") from None


def make_vector_env(env_id: str, n_envs: int, seed: int) -> gym.vector.SyncVectorEnv:
    """`n_envs` copies of `env_id` stepped in lock-step in this process, seeded
    seed, seed+1, ... on their first reset (the caller does that reset)."""
    make_env(env_id).close()  # fail here, with our message, on a bad id

    def thunk() -> Callable[[], gym.Env]:
        return lambda: gym.make(env_id)

    envs = gym.vector.SyncVectorEnv([thunk() for _ in range(n_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    envs.action_space.seed(seed)
    return envs


def space_dims(env_id: str) -> tuple[int, int, bool]:
    """(observation size, number of actions or action size, continuous?) of `env_id`."""
    env = make_env(env_id)
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise EnvError(f"{env_id} has observation space {obs_space}; a flat Box is needed")
    if isinstance(act_space, gym.spaces.Discrete):
        return int(obs_space.shape[0]), int(act_space.n), False
    if isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1:
        return int(obs_space.shape[0]), int(act_space.shape[0]), True
    raise EnvError(f"{env_id} has action space {act_space}; Discrete or a flat Box is needed")


def final_observations(next_obs: np.ndarray, infos: dict, done: np.ndarray) -> np.ndarray:
    """The true last observation of every sub-environment (differs from `next_obs` only
    where an episode just ended, SAME_STEP autoreset)."""
    real = next_obs.copy()
    if done.any() and "final_obs" in infos:
        for i in np.flatnonzero(done):
            real[i] = infos["final_obs"][i]
    return real
