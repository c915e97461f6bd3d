"""Step 2 application, recommendation as sequential decision making: contextual bandits
against a DQN agent on a simulated user who gets bored (recommender_env.py).

Five learners recommend a shelf to a stream of simulated users, each for the same number of
environment steps, learning online:

- random: a uniform shelf, the floor;
- epsilon-greedy, LinUCB, linear Thompson sampling (bandits.py): each step, a linear model of
  the *next* step's clicks on per-shelf features; they differ only in how they explore;
- DQN (rl.dqn's Q-network, double-DQN loss and replay buffer, imported, not copied): learns
  Q(s, a) = E[clicks now + gamma * clicks later], so it can trade a click now for a user who
  stays.

Bandit features of shelf a, from the observation [profile u, exposure b, t / T] and the
shelf's examination-weighted mean item vector v_a (R^K):

  x_a = [u * v_a (K),  (u . v_a)^2,  b * v_a (K),  1]        (2K + 2 values, * elementwise)

enough for a linear model to rank shelves by affinity and to see boredom (b * v_a) coming.
After learning, every learner is scored greedily (bandits by their ridge estimate, DQN by
argmax Q) on the same evaluation users: mean clicks per session, the long-term return.
The bar: DQN beats the best bandit and every learner beats random.

Regret. Bandit regret is myopic: regret_t = max_a E[clicks_t | s_t, a] - E[clicks_t | s_t, a_t],
computed exactly from the simulator. A bandit drives it towards 0; DQN keeps paying some on
purpose, and the return shows whether that buys longer sessions.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from pydantic import Field
from torch import nn

from aiforge.core import Bar, Recipe, RecipeConfig, RunContext, register
from aiforge.core.plots import bar_chart, plt
from aiforge.core.progress import progress
from aiforge.rl.bandits import EpsilonGreedy, LinearBandit, LinearThompson, LinUCB
from aiforge.rl.common import EpisodeLog, ReplayBuffer
from aiforge.rl.common.curves import plot_learning_curves
from aiforge.rl.dqn import QNetwork, dqn_loss
from aiforge.rl.recommender_env import UserChoiceEnv, UserSimConfig

BANDITS = ("epsilon_greedy", "linucb", "thompson")


class RecommenderConfig(RecipeConfig):
    sim: UserSimConfig = UserSimConfig()
    """The simulated users and catalogue (recommender_env.UserSimConfig)."""
    steps: int = Field(30_000, ge=1)
    """Environment steps every learner interacts for (the same budget for all)."""
    reg: float = Field(1.0, gt=0)
    """Ridge lambda of the bandits' linear model."""
    epsilon: float = Field(0.1, ge=0, le=1)
    """Epsilon-greedy exploration rate."""
    ucb_alpha: float = Field(1.0, ge=0)
    """LinUCB width multiplier alpha."""
    ts_v: float = Field(0.5, gt=0)
    """Thompson sampling posterior scale v."""
    gamma: float = Field(0.9, gt=0, le=1)
    """DQN discount: the horizon over which a click later is worth one now."""
    lr: float = Field(1e-3, gt=0)
    """DQN Adam learning rate."""
    hidden: int = Field(128, ge=1)
    """DQN hidden width."""
    batch_size: int = Field(256, ge=1)
    """DQN minibatch."""
    buffer_size: int = Field(50_000, ge=1)
    """DQN replay capacity."""
    learning_starts: int = Field(1_000, ge=0)
    """Uniform-random steps that fill the replay buffer first."""
    train_freq: int = Field(1, ge=1)
    """Environment steps per DQN gradient step."""
    target_update: int = Field(250, ge=1)
    """Steps between target-network copies."""
    eps_start: float = Field(1.0, ge=0, le=1)
    """DQN initial exploration rate."""
    eps_end: float = Field(0.05, ge=0, le=1)
    """DQN final exploration rate."""
    eps_fraction: float = Field(0.3, gt=0, le=1)
    """Fraction of the steps over which DQN's epsilon decays linearly."""
    select_every: int = Field(5_000, ge=1)
    """Steps between greedy DQN model-selection evaluations (on their own users)."""
    select_episodes: int = Field(200, ge=1)
    """Sessions per model-selection evaluation."""
    eval_episodes: int = Field(1_000, ge=1)
    """Greedy evaluation sessions per learner (the same users for all)."""


def shelf_vectors(env: UserChoiceEnv) -> np.ndarray:
    """(n_items, K): each shelf's mean item vector weighted by examination probability."""
    w = env.examination / env.examination.sum()                                  # (L,)
    return np.einsum("l,nlk->nk", w, env.items[env.shelves])


def bandit_features(obs: np.ndarray, shelves: np.ndarray) -> np.ndarray:
    """x_a for every shelf a (see the module docstring), (n_items, 2K + 2)."""
    K = shelves.shape[1]
    profile, exposure = obs[:K], obs[K:2 * K]
    affinity = shelves @ profile                                                 # (N,)
    return np.concatenate([profile * shelves, affinity[:, None] ** 2, exposure * shelves,
                           np.ones((len(shelves), 1))], axis=1)


class RecommenderAgents(nn.Module):
    """Every trained learner of a run in one module (saved and loaded as one state dict)."""

    def __init__(self, cfg: RecommenderConfig) -> None:
        super().__init__()
        env = UserChoiceEnv(cfg.sim)
        dim = 2 * cfg.sim.n_topics + 2
        self.register_buffer("shelves", torch.from_numpy(shelf_vectors(env)))    # (N, K)
        self.q = QNetwork(2 * cfg.sim.n_topics + 1, cfg.sim.n_items, cfg.hidden)
        self.bandits = nn.ModuleDict({
            "epsilon_greedy": EpsilonGreedy(dim, cfg.reg, cfg.epsilon),
            "linucb": LinUCB(dim, cfg.reg, cfg.ucb_alpha),
            "thompson": LinearThompson(dim, cfg.reg, cfg.ts_v),
        })

    def act(self, obs: np.ndarray) -> int:
        """The RL agent's recommendation: argmax_a Q(s, a)."""
        return self.q.act(obs)

    def bandit_act(self, name: str, obs: np.ndarray) -> int:
        """A bandit's greedy recommendation (its ridge estimate, no exploration)."""
        bandit: LinearBandit = self.bandits[name]  # type: ignore[assignment]
        return bandit.greedy(bandit_features(obs, self.shelves.numpy()))


def build_model(cfg: RecommenderConfig) -> RecommenderAgents:
    return RecommenderAgents(cfg)


@dataclass
class Trace:
    """What a learner's online run leaves for the figures: finished sessions and per-step
    myopic regret and clicks."""

    log: EpisodeLog = field(default_factory=EpisodeLog)
    regret: list[float] = field(default_factory=list)
    clicks: list[float] = field(default_factory=list)


def online_step(env: UserChoiceEnv, action: int, trace: Trace, step: int
                ) -> tuple[np.ndarray, float, bool, bool]:
    """Step the env, recording the action's myopic regret (exact, from the simulator)."""
    expected = env.expected_clicks()                                             # (N,)
    obs, reward, term, trunc, _ = env.step(action)
    trace.regret.append(float(expected.max() - expected[action]))
    trace.clicks.append(reward)
    trace.log.track(np.array([reward]), np.array([term or trunc]), step)
    return obs, reward, term, trunc


def run_bandit(bandit: LinearBandit | None, cfg: RecommenderConfig, shelves: np.ndarray,
               seed: int) -> Trace:
    """A bandit (None: random) learning online for cfg.steps steps; reward = clicks."""
    env, rng, trace = UserChoiceEnv(cfg.sim), np.random.default_rng(seed), Trace()
    obs, _ = env.reset(seed=seed)
    for step in range(1, cfg.steps + 1):
        if bandit is None:
            action = int(rng.integers(cfg.sim.n_items))
        else:
            x = bandit_features(obs, shelves)                                    # (N, d)
            action = bandit.select(x, rng)
        next_obs, reward, term, trunc = online_step(env, action, trace, step)
        if bandit is not None:
            bandit.update(x[action], reward)
        obs = next_obs if not (term or trunc) else env.reset()[0]
    return trace


def evaluate(env: UserChoiceEnv, policy: Callable[[np.ndarray], int], episodes: int,
             seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clicks per session and session lengths; session k's user is drawn with seed + k."""
    returns, lengths = np.zeros(episodes), np.zeros(episodes)
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        done = False
        while not done:
            obs, reward, term, trunc, _ = env.step(policy(obs))
            returns[k] += reward
            lengths[k] += 1
            done = term or trunc
    return returns, lengths


def epsilon_at(step: int, cfg: RecommenderConfig) -> float:
    frac = min(1.0, step / (cfg.eps_fraction * cfg.steps))
    return cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)


def run_dqn(q: QNetwork, cfg: RecommenderConfig, seed: int, ctx: RunContext,
            on_step: Callable[[int], None]) -> Trace:
    """Double DQN (rl.dqn's loss) on the session simulator; keeps the weights that scored
    best on periodic greedy evaluations of their own users, as rl.dqn does."""
    env, rng, trace = UserChoiceEnv(cfg.sim), np.random.default_rng(seed), Trace()
    q_target = copy.deepcopy(q)
    optimizer = torch.optim.Adam(q.parameters(), lr=cfg.lr)
    buffer = ReplayBuffer(cfg.buffer_size, env.observation_space.shape[0])
    best_score, best_state = -np.inf, copy.deepcopy(q.state_dict())
    obs, _ = env.reset(seed=seed)
    for step in range(1, cfg.steps + 1):
        if step <= cfg.learning_starts or rng.random() < epsilon_at(step, cfg):
            action = int(rng.integers(cfg.sim.n_items))
        else:
            action = q.act(obs)
        next_obs, reward, term, trunc = online_step(env, action, trace, step)
        # The user leaving is terminal; the session cap is a truncation (bootstrapped).
        buffer.add(obs[None], np.array([action]), np.array([reward]), next_obs[None],
                   np.array([term]))
        obs = next_obs if not (term or trunc) else env.reset()[0]
        if step > cfg.learning_starts and step % cfg.train_freq == 0:
            loss = dqn_loss(q, q_target, buffer.sample(cfg.batch_size, rng), cfg.gamma, True)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(q.parameters(), 10.0)
            optimizer.step()
        if step % cfg.target_update == 0:
            q_target.load_state_dict(q.state_dict())
        if step % cfg.select_every == 0 or step == cfg.steps:
            score = float(evaluate(UserChoiceEnv(cfg.sim), q.act, cfg.select_episodes,
                                   50_000 + seed + step)[0].mean())
            if score >= best_score:
                best_score, best_state = score, copy.deepcopy(q.state_dict())
            ctx.log_metrics({"dqn_select_return": score, "epsilon": epsilon_at(step, cfg)},
                            step=step)
        on_step(step)
    q.load_state_dict(best_state)
    return trace


def plot_regret(traces: dict[str, Trace], path_regret: str, ctx: RunContext) -> None:
    """Cumulative myopic regret and cumulative clicks against steps, one line per learner."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, trace in traces.items():
        steps = np.arange(1, len(trace.regret) + 1)
        axes[0].plot(steps, np.cumsum(trace.regret), label=name)
        axes[1].plot(steps, np.cumsum(trace.clicks), label=name)
    axes[0].set(xlabel="environment steps", ylabel="cumulative myopic regret",
                title="regret vs the best next-click shelf")
    axes[1].set(xlabel="environment steps", ylabel="cumulative clicks",
                title="cumulative reward while learning")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(ctx.figure_path(path_regret), dpi=110)
    plt.close(fig)


def train(cfg: RecommenderConfig, ctx: RunContext) -> dict[str, float]:
    agents = build_model(cfg)
    shelves = agents.shelves.numpy()
    traces: dict[str, Trace] = {}
    with progress(ctx.quiet) as bar:
        task = bar.add_task("recommender", total=5 * cfg.steps, info="bandits")
        for i, name in enumerate(("random", *BANDITS)):
            bandit = None if name == "random" else agents.bandits[name]
            traces[name] = run_bandit(bandit, cfg, shelves, cfg.seed + i)        # type: ignore[arg-type]
            bar.update(task, completed=(i + 1) * cfg.steps, info=name)
        traces["dqn"] = run_dqn(agents.q, cfg, cfg.seed + 4, ctx,
                                lambda s: bar.update(task, completed=4 * cfg.steps + s, info="dqn")
                                if s % 500 == 0 else None)
    agents.eval()

    # Greedy scoring on the same evaluation users for every learner.
    rng = np.random.default_rng(cfg.seed + 99)
    policies: dict[str, Callable[[np.ndarray], int]] = {
        "random": lambda obs: int(rng.integers(cfg.sim.n_items)),
        **{name: (lambda obs, n=name: agents.bandit_act(n, obs)) for name in BANDITS},
        "dqn": agents.act,
    }
    env = UserChoiceEnv(cfg.sim)
    # A reference, not a learner: the best next-click shelf, reading the true user of `env`.
    policies["myopic_oracle"] = lambda obs: int(np.argmax(env.expected_clicks()))
    metrics: dict[str, float] = {}
    for name, policy in policies.items():
        returns, lengths = evaluate(env, policy, cfg.eval_episodes, 10_000 + cfg.seed)
        metrics[f"return_{name}"] = float(returns.mean())
        metrics[f"session_length_{name}"] = float(lengths.mean())
        if name != "myopic_oracle":
            metrics[f"regret_{name}"] = float(np.sum(traces[name].regret))
    best_bandit = max(metrics[f"return_{n}"] for n in BANDITS)
    metrics["rl_minus_best_bandit"] = metrics["return_dqn"] - best_bandit
    metrics["worst_learner_minus_random"] = (
        min(metrics[f"return_{n}"] for n in (*BANDITS, "dqn")) - metrics["return_random"])
    # The bar needs both: RL above the best bandit, every learner above random.
    metrics["bar_margin"] = min(metrics["rl_minus_best_bandit"], metrics["worst_learner_minus_random"])

    plot_regret({n: traces[n] for n in ("random", *BANDITS, "dqn")}, "regret.png", ctx)
    plot_learning_curves({n: t.log for n, t in traces.items()},
                         ctx.figure_path("learning_curves.png"),
                         "clicks per session while learning", window=200)
    bar_chart({n: metrics[f"return_{n}"] for n in policies}, ctx.figure_path("returns.png"),
              "clicks per session (greedy)", "long-term return on the evaluation users")
    ctx.save_model(agents)
    return metrics


RECIPE = register(Recipe(
    name="rl.recommender",
    step="2",
    topic="RL application: recommendation (bandits vs DQN)",
    summary="Epsilon-greedy, LinUCB, Thompson sampling and DQN recommending to simulated users "
            "who get bored; DQN must win on clicks per session.",
    config=RecommenderConfig,
    train=train,
    bar=Bar("bar_margin", ">", 0.0),
    quick_bar=Bar("bar_margin", ">", 0.0),
    budget_s=300,
    quick={"steps": 8_000, "select_every": 2_000, "eval_episodes": 300},
    build_model=build_model,
))
