"""Episode bookkeeping during training and greedy evaluation after it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aiforge.rl.common.envs import make_env

Policy = Callable[[np.ndarray], np.ndarray | int | float]


@dataclass
class EpisodeLog:
    """Returns of finished training episodes with the env step and wall second each ended
    at; the raw material of the learning curves. `track` follows `n_envs` running sums."""

    n_envs: int = 1
    started: float = field(default_factory=time.perf_counter)
    returns: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    _running: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self._running = np.zeros(self.n_envs)

    def track(self, rewards: np.ndarray, dones: np.ndarray, global_step: int) -> None:
        self._running += rewards
        for i in np.flatnonzero(dones):
            self.add(float(self._running[i]), global_step)
            self._running[i] = 0.0

    def add(self, episode_return: float, global_step: int) -> None:
        self.returns.append(episode_return)
        self.steps.append(global_step)
        self.seconds.append(time.perf_counter() - self.started)

    def state_dict(self) -> dict[str, Any]:
        """For a checkpoint: the episodes so far, the running sums, and the seconds elapsed
        (the clock goes on from there after a resume)."""
        return {"returns": list(self.returns), "steps": list(self.steps),
                "seconds": list(self.seconds), "running": self._running.tolist(),
                "elapsed": time.perf_counter() - self.started}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.returns, self.steps = list(state["returns"]), list(state["steps"])
        self.seconds, self._running = list(state["seconds"]), np.asarray(state["running"])
        self.started = time.perf_counter() - state["elapsed"]

    def recent_mean(self, window: int = 100) -> float:
        return float(np.mean(self.returns[-window:])) if self.returns else float("nan")

    def first_reaching(self, threshold: float, window: int = 100) -> tuple[int, float] | None:
        """(step, seconds) when the `window`-episode mean first reached `threshold`."""
        if len(self.returns) < window:
            return None
        csum = np.concatenate([[0.0], np.cumsum(self.returns)])
        means = (csum[window:] - csum[:-window]) / window        # mean of episodes k-window..k-1
        hits = np.flatnonzero(means >= threshold)
        if not len(hits):
            return None
        k = int(hits[0]) + window - 1                             # the episode that got there
        return self.steps[k], self.seconds[k]


def evaluate_policy(env_id: str, policy: Policy, episodes: int, seed: int,
                    env_kwargs: dict[str, object] | None = None) -> np.ndarray:
    """Returns of `episodes` episodes of `policy` (obs -> action), episode k reset with
    seed + k so that two policies are compared on the same starts."""
    env = make_env(env_id, **(env_kwargs or {}))
    returns = np.zeros(episodes)
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            returns[k] += float(reward)
            done = terminated or truncated
    env.close()
    return returns
