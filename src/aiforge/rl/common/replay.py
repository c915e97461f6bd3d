"""A fixed-size replay buffer (Lin, 1992; Mnih et al., 2015): a ring of preallocated numpy
arrays. When full, the oldest transition is overwritten; sampling is uniform over what is
stored, with replacement."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Batch:
    obs: torch.Tensor        # (B, obs_dim)
    actions: torch.Tensor    # (B,) int64
    rewards: torch.Tensor    # (B,)
    next_obs: torch.Tensor   # (B, obs_dim)
    terminated: torch.Tensor  # (B,) 1.0 where s' is terminal (no bootstrap); truncation is not


class ReplayBuffer:
    def __init__(self, capacity: int, obs_dim: int) -> None:
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.pos = 0      # where the next transition goes
        self.size = 0     # how many are stored (<= capacity)

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray,
            next_obs: np.ndarray, terminated: np.ndarray) -> None:
        """Add a batch of transitions (n,), one per vector sub-environment."""
        for i in range(len(action)):
            self.obs[self.pos] = obs[i]
            self.actions[self.pos] = action[i]
            self.rewards[self.pos] = reward[i]
            self.next_obs[self.pos] = next_obs[i]
            self.terminated[self.pos] = terminated[i]
            self.pos = (self.pos + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    FIELDS = ("obs", "next_obs", "actions", "rewards", "terminated")

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """The stored transitions and the ring's position, for a resumable checkpoint."""
        arrays = {k: torch.from_numpy(getattr(self, k)[: self.size].copy()) for k in self.FIELDS}
        return {**arrays, "pos": self.pos, "size": self.size}

    def load_state_dict(self, state: dict[str, torch.Tensor | int]) -> None:
        size = int(state["size"])
        if size > self.capacity:
            raise ValueError(f"the saved buffer holds {size} transitions, capacity is {self.capacity}")
        for k in self.FIELDS:
            getattr(self, k)[:size] = state[k].numpy()  # type: ignore[union-attr]
        self.pos, self.size = int(state["pos"]), size

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = rng.integers(0, self.size, size=batch_size)
        return Batch(
            obs=torch.from_numpy(self.obs[idx]),
            actions=torch.from_numpy(self.actions[idx]),
            rewards=torch.from_numpy(self.rewards[idx]),
            next_obs=torch.from_numpy(self.next_obs[idx]),
            terminated=torch.from_numpy(self.terminated[idx]),
        )
