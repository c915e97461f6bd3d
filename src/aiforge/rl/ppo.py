"""Step 2, policy-based RL: Proximal Policy Optimization (Schulman et al., 2017).

One iteration: run the current policy pi_old in `n_envs` vectorised environments for
`n_steps` steps, score every step with Generalised Advantage Estimation, then take
`epochs` passes of minibatch gradient steps on the clipped surrogate

  r_t(theta) = pi_theta(a_t | s_t) / pi_old(a_t | s_t)
  L^CLIP     = E_t[ min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t) ]          (PPO eq. 7)
  L          = -L^CLIP + c_v * (V(s_t) - R_t)^2 - c_e * H[pi_theta(.|s_t)]     (PPO eq. 9)

with GAE (Schulman et al., 2016, eq. 16), computed backwards in time:

  delta_t = r_t + gamma * V(s_{t+1}) * (1 - terminal_{t+1}) - V(s_t)
  A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1},      R_t = A_t + V(s_t)

A time-limit truncation is `done` (the advantage chain stops) but not `terminal` (the value
of the real last state is still bootstrapped). The implementation details follow Huang et
al. (2022), "The 37 implementation details of PPO": orthogonal initialisation, per-minibatch
advantage normalisation, optional value clipping, global gradient clipping, a linearly
annealed learning rate. The actor is categorical for discrete actions and a diagonal
Gaussian with a state-independent log standard deviation for continuous ones.
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.distributions import Categorical, Distribution, Normal

from aiforge.core import Bar, Recipe, RecipeConfig, RunContext, register
from aiforge.core.checkpoint import latest_checkpoint, save_checkpoint
from aiforge.core.progress import progress
from aiforge.rl.common import EpisodeLog, evaluate_policy, make_vector_env, space_dims
from aiforge.rl.common.curves import plot_learning_curves
from aiforge.rl.common.envs import EnvId, final_observations
from aiforge.rl.common.snapshot import loop_state, restore_loop_state


class PPOConfig(RecipeConfig):
    env_id: EnvId = "CartPole-v1"
    """Gymnasium environment with a flat Box observation; Discrete or Box actions."""
    total_steps: int = Field(100_000, ge=1)
    """Environment steps over all sub-environments."""
    n_envs: int = Field(8, ge=1)
    """Vectorised environments stepped in lock-step."""
    n_steps: int = Field(32, ge=1)
    """Steps per environment per rollout; a rollout holds n_envs * n_steps transitions."""
    epochs: int = Field(10, ge=1)
    """Passes over each rollout."""
    minibatch_size: int = Field(256, ge=1)
    """Transitions per gradient step."""
    lr: float = Field(2e-3, gt=0)
    """Adam learning rate at the start."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over the run."""
    gamma: float = Field(0.98, gt=0, le=1)
    """Discount factor."""
    gae_lambda: float = Field(0.8, ge=0, le=1)
    """GAE lambda: 0 is one-step TD, 1 is the Monte Carlo return."""
    clip_coef: float = Field(0.2, gt=0)
    """Policy ratio clip epsilon."""
    clip_vloss: bool = False
    """Clip the value update to clip_coef around the old value (PPO2-style)."""
    norm_adv: bool = True
    """Normalise advantages to zero mean, unit std per minibatch."""
    ent_coef: float = Field(0.0, ge=0)
    """Entropy bonus coefficient c_e."""
    vf_coef: float = Field(0.5, ge=0)
    """Value loss coefficient c_v."""
    max_grad_norm: float = Field(0.5, gt=0)
    """Clip the global gradient norm."""
    hidden: int = Field(64, ge=1)
    """Width of the two hidden layers of actor and critic (separate networks)."""
    init_log_std: float = 0.0
    """Continuous actions: initial log standard deviation of the Gaussian policy."""
    target_return: float | None = 475.0
    """Record when the 100-episode training mean first reaches this (None: do not)."""
    eval_episodes: int = Field(100, ge=1)
    """Deterministic evaluation episodes after training (mean action / argmax)."""
    checkpoint_every: int = Field(25_000, ge=1)
    """Environment steps between resumable checkpoints (rounded up to whole rollouts)."""


def layer(n_in: int, n_out: int, gain: float = float(np.sqrt(2))) -> nn.Linear:
    """Orthogonal weights, zero bias (implementation detail 2 of Huang et al.)."""
    linear = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(linear.weight, gain)
    nn.init.zeros_(linear.bias)
    return linear


def mlp(n_in: int, hidden: int, n_out: int, out_gain: float) -> nn.Sequential:
    return nn.Sequential(layer(n_in, hidden), nn.Tanh(), layer(hidden, hidden), nn.Tanh(),
                         layer(hidden, n_out, out_gain))


class ActorCritic(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, continuous: bool, hidden: int = 64,
                 init_log_std: float = 0.0) -> None:
        super().__init__()
        self.continuous = continuous
        self.critic = mlp(obs_dim, hidden, 1, 1.0)
        # A small last layer keeps the first policy near uniform / near zero mean.
        self.actor = mlp(obs_dim, hidden, act_dim, 0.01)
        if continuous:
            self.log_std = nn.Parameter(torch.full((act_dim,), init_log_std))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)                 # (B,)

    def dist(self, obs: torch.Tensor) -> Distribution:
        out = self.actor(obs)                               # (B, A)
        # validate_args=False: the argument checks cost more than the tiny network here
        if self.continuous:
            return Normal(out, self.log_std.exp().expand_as(out), validate_args=False)
        return Categorical(logits=out, validate_args=False)

    def log_prob(self, d: Distribution, actions: torch.Tensor) -> torch.Tensor:
        lp = d.log_prob(actions)
        return lp.sum(-1) if self.continuous else lp        # (B,): independent action dims

    def entropy(self, d: Distribution) -> torch.Tensor:
        ent = d.entropy()
        return ent.sum(-1) if self.continuous else ent      # (B,)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action: the Gaussian mean, or the most likely discrete action."""
        out = self.actor(obs)
        return out if self.continuous else out.argmax(-1)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray | int:
        action = self(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))[0]
        return action.numpy() if self.continuous else int(action)


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor,
                terminated: torch.Tensor, dones: torch.Tensor, gamma: float,
                lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over a rollout; every tensor is (T, N). `next_values[t]` is V of the real state
    after step t; `terminated[t]` zeroes it; `dones[t]` (terminated or truncated) cuts the
    chain. Returns (advantages, returns = advantages + values)."""
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])                  # (N,) A_{t+1}
    for t in reversed(range(rewards.shape[0])):
        delta = rewards[t] + gamma * next_values[t] * (1 - terminated[t]) - values[t]
        running = delta + gamma * lam * (1 - dones[t]) * running
        advantages[t] = running
    return advantages, advantages + values


def clipped_policy_loss(new_logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                        clip_coef: float) -> torch.Tensor:
    """-L^CLIP (PPO eq. 7) as a loss to minimise: the pessimistic (max of the negatives) of
    the unclipped and clipped surrogate."""
    ratio = (new_logp - old_logp).exp()                     # (B,)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)
    return torch.max(unclipped, clipped).mean()


def value_loss(new_v: torch.Tensor, old_v: torch.Tensor, returns: torch.Tensor,
               clip_coef: float | None) -> torch.Tensor:
    if clip_coef is None:
        return 0.5 * (new_v - returns).pow(2).mean()
    clipped_v = old_v + (new_v - old_v).clamp(-clip_coef, clip_coef)
    return 0.5 * torch.max((new_v - returns).pow(2), (clipped_v - returns).pow(2)).mean()


def build_model(cfg: PPOConfig) -> ActorCritic:
    obs_dim, act_dim, continuous = space_dims(cfg.env_id)
    return ActorCritic(obs_dim, act_dim, continuous, cfg.hidden, cfg.init_log_std)


def update(agent: ActorCritic, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
           cfg: PPOConfig) -> dict[str, float]:
    """`epochs` passes of minibatch steps over one flattened rollout (B = n_envs * n_steps)."""
    size = batch["obs"].shape[0]
    for _ in range(cfg.epochs):
        for idx in torch.randperm(size).split(cfg.minibatch_size):
            d = agent.dist(batch["obs"][idx])
            new_logp = agent.log_prob(d, batch["actions"][idx])            # (b,)
            adv = batch["advantages"][idx]
            if cfg.norm_adv and len(idx) > 1:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            pg_loss = clipped_policy_loss(new_logp, batch["logp"][idx], adv, cfg.clip_coef)
            v_loss = value_loss(agent.value(batch["obs"][idx]), batch["values"][idx],
                                batch["returns"][idx], cfg.clip_coef if cfg.clip_vloss else None)
            loss = pg_loss + cfg.vf_coef * v_loss
            if cfg.ent_coef > 0:  # with c_e = 0 the entropy would only add backward work
                loss = loss - cfg.ent_coef * agent.entropy(d).mean()
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
            optimizer.step()
    with torch.no_grad():  # of the last minibatch; approximate KL(pi_old || pi), k3 estimator
        log_r = new_logp - batch["logp"][idx]
        return {"policy_loss": float(pg_loss), "value_loss": float(v_loss),
                "entropy": float(agent.entropy(d).mean()),
                "approx_kl": float(((log_r.exp() - 1) - log_r).mean())}


def collect(agent: ActorCritic, envs: gym.vector.VectorEnv, obs: np.ndarray, cfg: PPOConfig,
            log: EpisodeLog, global_step: int) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """One rollout of n_steps in every environment; returns the flat batch and the next obs."""
    T, N = cfg.n_steps, cfg.n_envs
    # Per-step bookkeeping goes to numpy (a numpy row write costs a fraction of a torch one);
    # the network's outputs stay torch tensors.
    obs_buf = np.zeros((T, N, obs.shape[1]), dtype=np.float32)
    rewards, terminated, dones = (np.zeros((T, N), dtype=np.float32) for _ in range(3))
    values, next_values, logp = torch.zeros(T, N), torch.zeros(T, N), torch.zeros(T, N)
    act_buf: list[torch.Tensor] = []
    space = envs.single_action_space
    for t in range(T):
        obs_buf[t] = obs
        obs_t = torch.from_numpy(obs_buf[t])                                # (N, obs_dim)
        with torch.no_grad():
            d = agent.dist(obs_t)
            action = d.sample()                                             # (N,) or (N, A)
            logp[t] = agent.log_prob(d, action)
            values[t] = agent.value(obs_t)
        # The Gaussian is unbounded; the env gets the sample clipped to its bounds, the
        # buffer keeps the unclipped sample so that log-probabilities stay exact.
        env_action = (np.clip(action.numpy(), space.low, space.high) if agent.continuous
                      else action.numpy())
        next_obs, reward, term, trunc, infos = envs.step(env_action)
        done = term | trunc
        global_step += N
        log.track(reward, done, global_step)
        cut = trunc & ~term  # a time-limit cut: bootstrap V of the real last state
        if cut.any():
            last = final_observations(next_obs, infos, done)[cut]
            with torch.no_grad():
                next_values[t, torch.from_numpy(cut)] = agent.value(
                    torch.as_tensor(last, dtype=torch.float32))
        rewards[t], terminated[t], dones[t] = reward, term, done
        act_buf.append(action)
        obs = next_obs
    # V(s_{t+1}) where the episode goes on is the next step's V(s_t); after the last step it
    # is V of the observation the next rollout starts from. Where it ended, the entry set
    # above stays (truncation) or is multiplied by 0 in GAE (termination).
    done_t = torch.from_numpy(dones)                                        # (T, N)
    with torch.no_grad():
        v_last = agent.value(torch.as_tensor(obs, dtype=torch.float32))     # (N,)
    following = torch.cat([values[1:], v_last[None]])                       # (T, N)
    next_values = torch.where(done_t.bool(), next_values, following)
    adv, ret = compute_gae(torch.from_numpy(rewards), values, next_values,
                           torch.from_numpy(terminated), done_t, cfg.gamma, cfg.gae_lambda)
    actions = torch.stack(act_buf)                                          # (T, N[, A])
    batch = {"obs": torch.from_numpy(obs_buf).flatten(0, 1), "actions": actions.flatten(0, 1),
             "logp": logp.flatten(), "values": values.flatten(),
             "advantages": adv.flatten(), "returns": ret.flatten()}
    return batch, obs


def save(ctx: RunContext, agent: ActorCritic, optimizer: torch.optim.Optimizer,
         envs: gym.vector.SyncVectorEnv, log: EpisodeLog, obs: np.ndarray, iteration: int,
         global_step: int) -> None:
    """A resumable checkpoint after `iteration` rollouts: the agent, Adam's moments, the
    RNGs, the environments mid-episode and the observation the next rollout starts from."""
    save_checkpoint(ctx.checkpoint_dir, iteration, agent,
                    {**loop_state(envs, log), "optimizer": optimizer.state_dict(),
                     "obs": torch.from_numpy(np.array(obs)), "global_step": global_step},
                    ctx.config.model_dump(mode="json"))


def train(cfg: PPOConfig, ctx: RunContext) -> dict[str, float]:
    envs = make_vector_env(cfg.env_id, cfg.n_envs, cfg.seed)
    agent = build_model(cfg)
    # fused: one kernel for all of Adam's per-parameter updates (the network is tiny, so the
    # optimizer's per-tensor overhead is a large share of a step)
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.lr, eps=1e-5, fused=True)
    obs, _ = envs.reset(seed=cfg.seed)
    log = EpisodeLog(cfg.n_envs)
    rollout = cfg.n_envs * cfg.n_steps
    iterations = max(1, cfg.total_steps // rollout)
    save_every = -(-cfg.checkpoint_every // rollout)  # whole rollouts, rounded up
    start, global_step, reached = 0, 0, None
    if ctx.resume and (ckpt := latest_checkpoint(ctx.checkpoint_dir)) is not None:
        ckpt.load_weights(agent)
        optimizer.load_state_dict(ckpt.state["optimizer"])
        restore_loop_state(ckpt.state, envs, log)
        obs = ckpt.state["obs"].numpy()
        start, global_step = ckpt.step, int(ckpt.state["global_step"])
    with progress(ctx.quiet) as bar:
        task = bar.add_task(f"PPO {cfg.env_id}", total=iterations, completed=start, info="")
        for it in range(start, iterations):
            if cfg.anneal_lr:  # linear decay to 0 at the last iteration
                optimizer.param_groups[0]["lr"] = cfg.lr * (1 - it / iterations)
            batch, obs = collect(agent, envs, obs, cfg, log, global_step)
            global_step += rollout
            stats = update(agent, optimizer, batch, cfg)
            mean100 = log.recent_mean()
            ctx.log_metrics({**stats, "train_return_100": mean100}, step=global_step)
            bar.update(task, advance=1, info=f"return {mean100:.1f}")
            if (it + 1) % save_every == 0 or it + 1 == iterations:
                save(ctx, agent, optimizer, envs, log, obs, it + 1, global_step)
    if cfg.target_return is not None:
        reached = log.first_reaching(cfg.target_return)
    envs.close()
    train_seconds = time.perf_counter() - log.started
    agent.eval()
    returns = evaluate_policy(cfg.env_id, agent.act, cfg.eval_episodes, cfg.seed + 10_000)
    plot_learning_curves({"PPO": log}, ctx.figure_path("learning_curves.png"),
                         f"PPO on {cfg.env_id}", target=cfg.target_return)
    ctx.save_model(agent)
    metrics = {"eval_mean_return": float(returns.mean()), "eval_std_return": float(returns.std()),
               "train_return_100": log.recent_mean(), "train_seconds": train_seconds,
               "episodes": float(len(log.returns)), "env_steps": float(global_step)}
    if reached is not None:
        metrics["steps_to_target"], metrics["seconds_to_target"] = float(reached[0]), reached[1]
    return metrics


RECIPE = register(Recipe(
    name="rl.ppo",
    step="2",
    topic="RL: PPO (clipped objective, GAE, vector envs)",
    summary="PPO with GAE, clipping and vectorised envs on CartPole-v1 (discrete actions).",
    config=PPOConfig,
    train=train,
    bar=Bar("eval_mean_return", ">=", 475.0),
    quick_bar=Bar("eval_mean_return", ">=", 150.0),
    budget_s=300,
    quick={"total_steps": 25_000, "eval_episodes": 20},
    build_model=build_model,
))


class PendulumPPOConfig(PPOConfig):
    """The continuous recipe: the same algorithm with a Gaussian policy and the settings of
    the RL Zoo's Pendulum-v1 PPO (long rollouts, short horizon gamma = 0.9)."""

    env_id: EnvId = "Pendulum-v1"
    """Gymnasium environment with a flat Box observation and Box actions."""
    total_steps: int = Field(200_000, ge=1)
    """Environment steps over all sub-environments."""
    n_envs: int = Field(4, ge=1)
    """Vectorised environments stepped in lock-step."""
    n_steps: int = Field(1024, ge=1)
    """Steps per environment per rollout."""
    epochs: int = Field(10, ge=1)
    """Passes over each rollout."""
    minibatch_size: int = Field(64, ge=1)
    """Transitions per gradient step."""
    lr: float = Field(1e-3, gt=0)
    """Adam learning rate at the start."""
    gamma: float = Field(0.9, gt=0, le=1)
    """Discount factor."""
    gae_lambda: float = Field(0.95, ge=0, le=1)
    """GAE lambda."""
    target_return: float | None = -250.0
    """Record when the 100-episode training mean first reaches this (None: do not)."""
    eval_episodes: int = Field(100, ge=1)
    """Deterministic (mean action) evaluation episodes after training."""


PENDULUM_RECIPE = register(Recipe(
    name="rl.ppo-pendulum",
    step="2",
    topic="RL: PPO, continuous actions",
    summary="PPO with a diagonal Gaussian policy on Pendulum-v1 (swing up and balance).",
    config=PendulumPPOConfig,
    train=train,
    bar=Bar("eval_mean_return", ">=", -250.0),
    quick_bar=Bar("eval_mean_return", ">=", -1000.0),
    budget_s=900,
    quick={"total_steps": 32_768, "eval_episodes": 20},
    build_model=build_model,
))
