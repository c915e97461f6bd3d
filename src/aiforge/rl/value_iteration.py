"""Step 2, RL fundamentals: MDPs and the Bellman equations, solved exactly.

FrozenLake's transition table `env.unwrapped.P[s][a] = [(p, s', r, done), ...]` is a full
MDP. From it we build P (S, A, S') and the expected reward R (S, A), then

  value iteration      V_{k+1}(s) = max_a  R(s,a) + gamma * sum_s' P(s'|s,a) V_k(s')
  policy evaluation    V^pi = (I - gamma P_pi)^-1 R_pi    (and the same by iteration)
  policy iteration     evaluate pi, then pi(s) = argmax_a Q(s,a), until pi is stable

(Sutton and Barto, 2018, sections 4.1-4.4). Terminal states absorb: their rows of P are
zero, so their value is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from pydantic import Field
from torch import nn

from aiforge.core import Bar, Recipe, RecipeConfig, RunContext, register
from aiforge.core.plots import plt


class ValueIterationConfig(RecipeConfig):
    gamma: float = Field(0.99, gt=0, lt=1)
    """Discount factor."""
    tol: float = Field(1e-10, gt=0)
    """Stop value iteration when the Bellman residual max|V_{k+1} - V_k| is below this."""
    max_iters: int = Field(100_000, ge=1)
    """Safety cap on value-iteration sweeps."""
    eval_episodes: int = Field(1000, ge=1)
    """Greedy evaluation episodes on the 4x4 slippery lake."""


@dataclass(frozen=True)
class MDP:
    P: np.ndarray  # (S, A, S) transition probabilities
    R: np.ndarray  # (S, A) expected immediate reward
    shape: tuple[int, int]
    desc: np.ndarray


def frozen_lake_mdp(map_name: str) -> MDP:
    env = gym.make("FrozenLake-v1", map_name=map_name, is_slippery=True)
    table = env.unwrapped.P  # type: ignore[attr-defined]
    n_s, n_a = env.observation_space.n, env.action_space.n  # type: ignore[attr-defined]
    P, R = np.zeros((n_s, n_a, n_s)), np.zeros((n_s, n_a))
    for s in range(n_s):
        for a in range(n_a):
            for p, s_next, r, done in table[s][a]:
                R[s, a] += p * r
                if not done:  # terminal successors contribute no future value
                    P[s, a, s_next] += p
    desc = env.unwrapped.desc  # type: ignore[attr-defined]
    env.close()
    return MDP(P, R, desc.shape, desc)


def q_values(mdp: MDP, V: np.ndarray, gamma: float) -> np.ndarray:
    return mdp.R + gamma * mdp.P @ V                     # (S, A)


def value_iteration(mdp: MDP, gamma: float, tol: float, max_iters: int) -> tuple[np.ndarray, list[float]]:
    V = np.zeros(mdp.R.shape[0])
    residuals = []
    for _ in range(max_iters):
        V_new = q_values(mdp, V, gamma).max(axis=1)
        residuals.append(float(np.abs(V_new - V).max()))
        V = V_new
        if residuals[-1] < tol:
            break
    return V, residuals


def policy_matrices(mdp: MDP, policy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(len(policy))
    return mdp.P[idx, policy], mdp.R[idx, policy]       # (S, S), (S,)


def evaluate_exact(mdp: MDP, policy: np.ndarray, gamma: float) -> np.ndarray:
    """Solve the Bellman expectation equation (I - gamma P_pi) V = R_pi."""
    P_pi, R_pi = policy_matrices(mdp, policy)
    return np.linalg.solve(np.eye(len(R_pi)) - gamma * P_pi, R_pi)


def evaluate_iterative(mdp: MDP, policy: np.ndarray, gamma: float, tol: float) -> np.ndarray:
    P_pi, R_pi = policy_matrices(mdp, policy)
    V = np.zeros(len(R_pi))
    while True:
        V_new = R_pi + gamma * P_pi @ V
        if np.abs(V_new - V).max() < tol:
            return V_new
        V = V_new


def policy_iteration(mdp: MDP, gamma: float) -> tuple[np.ndarray, np.ndarray, int]:
    policy = np.zeros(mdp.R.shape[0], dtype=np.int64)
    for iteration in range(1, 1000):
        V = evaluate_exact(mdp, policy, gamma)
        improved = greedy(mdp, V, gamma, tie_break=policy)
        if np.array_equal(improved, policy):
            return policy, V, iteration
        policy = improved
    raise RuntimeError("policy iteration did not converge in 1000 steps")


def greedy(mdp: MDP, V: np.ndarray, gamma: float, tie_break: np.ndarray | None = None) -> np.ndarray:
    """argmax_a Q(s, a). Ties within 1e-12 keep `tie_break`'s action (else the lowest), so
    that policy iteration stops instead of cycling between equally good actions."""
    Q = q_values(mdp, V, gamma)
    best = Q.max(axis=1, keepdims=True)
    is_best = best - 1e-12 <= Q
    policy = is_best.argmax(axis=1)
    if tie_break is not None:
        keep = is_best[np.arange(len(policy)), tie_break]
        policy = np.where(keep, tie_break, policy)
    return policy


def success_rate(policy: np.ndarray, map_name: str, episodes: int, seed: int) -> float:
    env = gym.make("FrozenLake-v1", map_name=map_name, is_slippery=True)
    wins = 0
    for episode in range(episodes):
        state, _ = env.reset(seed=seed + episode)
        done = False
        while not done:
            state, reward, terminated, truncated, _ = env.step(int(policy[state]))
            done = terminated or truncated
        wins += reward > 0
    env.close()
    return wins / episodes


class TabularPolicy(nn.Module):
    """A greedy tabular policy with its state values; `forward(states) -> actions`."""

    def __init__(self, n_states: int) -> None:
        super().__init__()
        self.register_buffer("values", torch.zeros(n_states, dtype=torch.float64))
        self.register_buffer("actions", torch.zeros(n_states, dtype=torch.int64))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.actions[states]


def build_model(cfg: ValueIterationConfig) -> TabularPolicy:
    return TabularPolicy(16)


def plot_lake(mdp: MDP, V: np.ndarray, policy: np.ndarray, ax: plt.Axes, title: str) -> None:
    rows, cols = mdp.shape
    ax.imshow(V.reshape(rows, cols), cmap="viridis")
    arrows = {0: (-0.3, 0), 1: (0, 0.3), 2: (0.3, 0), 3: (0, -0.3)}  # left, down, right, up
    for s in range(rows * cols):
        r, c = divmod(s, cols)
        cell = mdp.desc[r, c].decode()
        if cell in "HG":
            ax.text(c, r, cell, ha="center", va="center", color="white", fontsize=12, weight="bold")
            continue
        dx, dy = arrows[int(policy[s])]
        ax.arrow(c - dx / 2, r - dy / 2, dx, dy, head_width=0.15, color="white", length_includes_head=True)
    ax.set(title=title, xticks=[], yticks=[])


def train(cfg: ValueIterationConfig, ctx: RunContext) -> dict[str, float]:
    metrics: dict[str, float] = {}
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4))
    for ax, map_name in zip(axes, ("4x4", "8x8"), strict=True):
        mdp = frozen_lake_mdp(map_name)
        V_vi, residuals = value_iteration(mdp, cfg.gamma, cfg.tol, cfg.max_iters)
        pi_vi = greedy(mdp, V_vi, cfg.gamma)
        pi_pi, V_pi, pi_steps = policy_iteration(mdp, cfg.gamma)
        # Different optimal policies may tie; what must agree is their value.
        V_of_vi_policy = evaluate_exact(mdp, pi_vi, cfg.gamma)
        metrics[f"{map_name}_bellman_residual"] = residuals[-1]
        metrics[f"{map_name}_vi_sweeps"] = float(len(residuals))
        metrics[f"{map_name}_pi_iterations"] = float(pi_steps)
        metrics[f"{map_name}_policy_value_gap"] = float(np.abs(V_of_vi_policy - V_pi).max())
        metrics[f"{map_name}_policies_agree"] = float(np.array_equal(pi_vi, pi_pi))
        metrics[f"{map_name}_eval_gap"] = float(np.abs(
            evaluate_iterative(mdp, pi_pi, cfg.gamma, 1e-12) - evaluate_exact(mdp, pi_pi, cfg.gamma)).max())
        metrics[f"{map_name}_start_value"] = float(V_pi[0])
        plot_lake(mdp, V_pi, pi_pi, ax, f"FrozenLake {map_name}: V* and greedy policy")
        if map_name == "4x4":
            model = build_model(cfg)
            model.values.copy_(torch.from_numpy(V_pi))
            model.actions.copy_(torch.from_numpy(pi_pi))
            metrics["success_rate_4x4"] = success_rate(pi_pi, "4x4", cfg.eval_episodes, cfg.seed)
    fig.tight_layout()
    fig.savefig(ctx.figure_path("value_policy.png"), dpi=110)
    plt.close(fig)
    ctx.save_model(model)
    return metrics


RECIPE = register(Recipe(
    name="rl.value-iteration",
    step="2",
    topic="RL: MDPs and Bellman equations",
    summary="Value and policy iteration on FrozenLake 4x4 and 8x8 (slippery), exact.",
    config=ValueIterationConfig,
    train=train,
    bar=Bar("success_rate_4x4", ">=", 0.70),
    quick_bar=Bar("success_rate_4x4", ">=", 0.60),
    budget_s=30,
    quick={"eval_episodes": 300},
    build_model=build_model,
))
