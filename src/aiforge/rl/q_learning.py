"""Step 2, value-based RL without a model: tabular Q-learning and SARSA.

Both learn Q(s, a) from sampled transitions (s, a, r, s') with a temporal-difference update

  Q-learning (off-policy, Watkins 1989):  target = r + gamma * max_a' Q(s', a')
  SARSA (on-policy, Rummery & Niranjan 1994): target = r + gamma * Q(s', a'),
                                              a' the action the behaviour policy takes next
  Q(s, a) <- Q(s, a) + alpha * (target - Q(s, a))

(Sutton and Barto, 2018, sections 6.4-6.5). Behaviour is epsilon-greedy with epsilon decayed
linearly. A terminal s' has no future (target = r); a time-limit truncation still bootstraps,
because the state itself is not terminal.

Trained on Taxi-v4 (gymnasium 1.4's current Taxi; 500 states, 6 actions, optimal mean
return about 7.9) and on slippery FrozenLake 4x4 (reward only at the goal; the optimal
policy succeeds about 74% of the time, see rl.value-iteration).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from aiforge.core import Bar, Recipe, RecipeConfig, RunContext, register
from aiforge.rl.common import EpisodeLog, evaluate_policy, make_env
from aiforge.rl.common.curves import plot_learning_curves
from aiforge.rl.common.envs import EnvId

Method = Literal["q-learning", "sarsa"]


class QLearningConfig(RecipeConfig):
    env_id: EnvId = "Taxi-v4"
    """Main environment (discrete states and actions); the bar is measured here."""
    episodes: int = Field(5000, ge=1)
    """Training episodes on the main environment, per method."""
    alpha: float = Field(0.5, gt=0, le=1)
    """TD step size."""
    gamma: float = Field(0.99, gt=0, le=1)
    """Discount factor."""
    eps_start: float = Field(1.0, ge=0, le=1)
    """Initial exploration rate of the epsilon-greedy behaviour policy."""
    eps_end: float = Field(0.01, ge=0, le=1)
    """Final exploration rate."""
    eps_decay_fraction: float = Field(0.5, gt=0, le=1)
    """Fraction of the episodes over which epsilon decays linearly to eps_end."""
    lake_episodes: int = Field(20000, ge=0)
    """Training episodes on slippery FrozenLake 4x4 per method; 0 skips the lake."""
    lake_alpha: float = Field(0.05, gt=0, le=1)
    """TD step size on the lake (its transitions are noisy, so a smaller step)."""
    eval_episodes: int = Field(1000, ge=1)
    """Greedy evaluation episodes per environment and method."""


class TabularQ(nn.Module):
    """A Q table (S, A) as a buffer so that it saves as safetensors; acts greedily."""

    def __init__(self, n_states: int, n_actions: int) -> None:
        super().__init__()
        self.register_buffer("q", torch.zeros(n_states, n_actions, dtype=torch.float64))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.q[states]                          # (B, A)

    def act(self, obs: np.ndarray | int) -> int:
        return int(self.q[int(obs)].argmax())


def epsilon_greedy(q_row: np.ndarray, eps: float, rng: np.random.Generator) -> int:
    if rng.random() < eps:
        return int(rng.integers(len(q_row)))
    # Break ties at random: an all-zero row must not always pick action 0.
    best = np.flatnonzero(q_row == q_row.max())
    return int(rng.choice(best))


def learn(env_id: str, method: Method, episodes: int, alpha: float, cfg: QLearningConfig,
          rng: np.random.Generator) -> tuple[np.ndarray, EpisodeLog]:
    """Train a Q table with `method`; returns it with the training episodes' returns."""
    env = make_env(env_id)
    Q = np.zeros((env.observation_space.n, env.action_space.n))  # type: ignore[attr-defined]
    log, step = EpisodeLog(), 0
    decay_episodes = max(1, int(cfg.eps_decay_fraction * episodes))
    for episode in range(episodes):
        frac = min(1.0, episode / decay_episodes)
        eps = cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)
        s, _ = env.reset(seed=cfg.seed if episode == 0 else None)
        a = epsilon_greedy(Q[s], eps, rng)
        total, done = 0.0, False
        while not done:
            s_next, r, terminated, truncated, _ = env.step(a)
            a_next = epsilon_greedy(Q[s_next], eps, rng)
            if terminated:
                target = r
            elif method == "q-learning":
                target = r + cfg.gamma * Q[s_next].max()
            else:  # SARSA bootstraps on the action it will actually take
                target = r + cfg.gamma * Q[s_next, a_next]
            Q[s, a] += alpha * (target - Q[s, a])
            s, a, total, step = s_next, a_next, total + float(r), step + 1
            done = terminated or truncated
        log.add(total, step)
    env.close()
    return Q, log


def greedy_returns(env_id: str, Q: np.ndarray, episodes: int, seed: int) -> np.ndarray:
    # Evaluation seeds are far from the training seed so that starts are fresh.
    return evaluate_policy(env_id, lambda s: int(Q[int(s)].argmax()), episodes, seed + 10_000)


def train(cfg: QLearningConfig, ctx: RunContext) -> dict[str, float]:
    metrics: dict[str, float] = {}
    tasks = [(cfg.env_id, cfg.episodes, cfg.alpha, "main")]
    if cfg.lake_episodes:
        tasks.append(("FrozenLake-v1", cfg.lake_episodes, cfg.lake_alpha, "lake"))
    main_q: np.ndarray | None = None
    for env_id, episodes, alpha, tag in tasks:
        logs: dict[str, EpisodeLog] = {}
        for method in ("q-learning", "sarsa"):
            rng = np.random.default_rng(cfg.seed)
            Q, logs[method] = learn(env_id, method, episodes, alpha, cfg, rng)
            returns = greedy_returns(env_id, Q, cfg.eval_episodes, cfg.seed)
            key = f"{tag}_{method.replace('-', '_')}"
            metrics[f"{key}_mean_return"] = float(returns.mean())
            metrics[f"{key}_train_seconds"] = logs[method].seconds[-1]
            for episode, ret in enumerate(logs[method].returns[:: max(1, episodes // 200)]):
                ctx.log_metrics({f"{key}_train_return": ret}, step=episode)
            if tag == "main" and method == "q-learning":
                main_q = Q
        name = env_id.replace("/", "_")
        window = 100 if episodes >= 1000 else max(1, episodes // 10)
        plot_learning_curves(logs, ctx.figure_path(f"learning_curves_{name}.png"),
                             f"{env_id}: tabular Q-learning vs SARSA", window=window)
    assert main_q is not None
    model = TabularQ(*main_q.shape)
    model.q.copy_(torch.from_numpy(main_q))
    ctx.save_model(model)
    return metrics


def build_model(cfg: QLearningConfig) -> TabularQ:
    env = make_env(cfg.env_id)
    n_s, n_a = env.observation_space.n, env.action_space.n  # type: ignore[attr-defined]
    env.close()
    return TabularQ(int(n_s), int(n_a))


RECIPE = register(Recipe(
    name="rl.q-learning",
    step="2",
    topic="RL: tabular Q-learning and SARSA",
    summary="Tabular Q-learning and SARSA on Taxi-v4 and slippery FrozenLake 4x4.",
    config=QLearningConfig,
    train=train,
    bar=Bar("main_q_learning_mean_return", ">=", 7.0),
    quick_bar=Bar("main_q_learning_mean_return", ">=", 5.0),
    budget_s=120,
    quick={"episodes": 1500, "lake_episodes": 0, "eval_episodes": 200},
    build_model=build_model,
))
