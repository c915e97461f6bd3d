"""What an RL loop must save, besides its networks, to resume exactly where it stopped.

A supervised loop restarts an epoch from the data; an RL loop cannot: its data is the
environments' current episodes. So a checkpoint also holds every vector sub-environment's
state: each wrapper's counters (TimeLimit's elapsed steps, ...), the simulator's state
(CartPole's and Pendulum's `state` arrays, MuJoCo's full integration state through
`mj_getState`) and the environment's own random generator (it draws the next episode's
start). Restoring them into freshly made environments continues the same trajectories
bit for bit, which is what `tests/rl/test_resume.py` checks.

Everything here returns plain JSON values and torch tensors, the two kinds of value
`aiforge.core.checkpoint.save_checkpoint` stores (no pickling).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from aiforge.core.seeding import rng_state, set_rng_state
from aiforge.rl.common.evaluation import EpisodeLog

_SIMPLE = (bool, int, float, str, type(None))


def array_state(arr: np.ndarray | np.generic) -> dict[str, Any]:
    """A numpy array or scalar as a tensor plus what it takes to give back the same type."""
    out = np.asarray(arr)
    return {"tensor": torch.from_numpy(out.copy()), "scalar": isinstance(arr, np.generic)}


def array_from_state(state: dict[str, Any]) -> np.ndarray | np.generic:
    arr = state["tensor"].numpy().copy()
    return arr[()] if state["scalar"] else arr


def generator_state(rng: np.random.Generator) -> dict[str, Any]:
    """A numpy Generator's bit-generator state (PCG64's 128-bit integers fit JSON)."""
    return rng.bit_generator.state


def set_generator_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state


def _attributes(obj: object) -> dict[str, Any]:
    """The plain mutable attributes of one wrapper or environment: numbers, flags and numeric
    arrays. Spaces, specs, renderers and other objects are rebuilt by `gym.make` and are
    the same in a fresh copy, so they are left out."""
    state: dict[str, Any] = {}
    for name, value in vars(obj).items():
        if isinstance(value, _SIMPLE):
            state[name] = {"plain": value}
        elif isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "biuf":
            state[name] = {"array": array_state(value)}
    return state


def _set_attributes(obj: object, state: dict[str, Any]) -> None:
    for name, entry in state.items():
        setattr(obj, name, entry["plain"] if "plain" in entry else array_from_state(entry["array"]))


def _layers(env: gym.Env) -> list[gym.Env]:
    """The wrapper chain, outermost first, ending with the unwrapped environment."""
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _mujoco_state(env: gym.Env) -> torch.Tensor | None:
    """MuJoCo's integration state (time, qpos, qvel, actuator state, warm start, controls)."""
    data, model = getattr(env, "data", None), getattr(env, "model", None)
    if data is None or type(data).__module__.split(".")[0] != "mujoco":
        return None
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    buf = np.empty(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, data, buf, spec)
    return torch.from_numpy(buf)


def env_state(env: gym.Env) -> dict[str, Any]:
    """Everything that decides what one (wrapped) environment does next."""
    layers = _layers(env)
    base = layers[-1]
    state: dict[str, Any] = {"layers": [_attributes(layer) for layer in layers],
                             "np_random": generator_state(base.np_random)}
    if (physics := _mujoco_state(base)) is not None:
        state["mujoco"] = physics
    return state


def set_env_state(env: gym.Env, state: dict[str, Any]) -> None:
    layers = _layers(env)
    if len(layers) != len(state["layers"]):
        raise ValueError(f"the checkpoint has {len(state['layers'])} wrapper layers, "
                         f"the environment {len(layers)}")
    for layer, attrs in zip(layers, state["layers"], strict=True):
        _set_attributes(layer, attrs)
    base = layers[-1]
    set_generator_state(base.np_random, state["np_random"])
    if "mujoco" in state:
        import mujoco

        mujoco.mj_setState(base.model, base.data, state["mujoco"].numpy(),
                           mujoco.mjtState.mjSTATE_INTEGRATION)


def vector_env_state(envs: gym.vector.SyncVectorEnv) -> dict[str, Any]:
    """The state of every sub-environment and of the vector wrapper's own bookkeeping."""
    return {"vector": _attributes(envs), "envs": [env_state(env) for env in envs.envs]}


def set_vector_env_state(envs: gym.vector.SyncVectorEnv, state: dict[str, Any]) -> None:
    if len(state["envs"]) != len(envs.envs):
        raise ValueError(f"the checkpoint holds {len(state['envs'])} environments, "
                         f"the vector env {len(envs.envs)}")
    _set_attributes(envs, state["vector"])
    for env, sub in zip(envs.envs, state["envs"], strict=True):
        set_env_state(env, sub)


def loop_state(envs: gym.vector.SyncVectorEnv, log: EpisodeLog) -> dict[str, Any]:
    """What every RL loop's checkpoint holds besides its own networks and counters: the
    global RNGs (torch samples actions, numpy and python for anything else), the
    environments and the episode log."""
    tensors, plain = rng_state()
    return {"rng_tensors": tensors, "rng_plain": plain, "envs": vector_env_state(envs),
            "log": log.state_dict()}


def restore_loop_state(state: dict[str, Any], envs: gym.vector.SyncVectorEnv,
                       log: EpisodeLog) -> None:
    set_rng_state(state["rng_tensors"], state["rng_plain"])
    set_vector_env_state(envs, state["envs"])
    log.load_state_dict(state["log"])
