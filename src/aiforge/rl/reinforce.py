"""Step 2, the first policy-gradient method: REINFORCE (Williams, 1992) with reward-to-go
and a learned state-value baseline.

The policy-gradient theorem gives an unbiased gradient of the expected return J(theta):

  grad J = E[ sum_t grad log pi_theta(a_t | s_t) * (G_t - b(s_t)) ]
  G_t    = sum_{k >= t} gamma^(k - t) r_k                      (reward-to-go)

Using the reward-to-go instead of the whole episode's return drops rewards that came before
the action and cannot depend on it; subtracting a baseline b(s_t) that does not depend on the
action keeps the estimate unbiased while cutting its variance (Sutton and Barto, 2018,
section 13.4). The baseline is a network V_phi(s) regressed on G_t. An episode cut by the
time limit (not a terminal state) has its missing tail estimated by V_phi(s_T).

Each update uses `n_envs` complete, fresh episodes, one from each vectorised environment,
all from the current policy: REINFORCE is on-policy and cannot reuse old data.
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.distributions import Categorical

from aiforge.core import Bar, Recipe, RecipeConfig, RunContext, register
from aiforge.core.checkpoint import latest_checkpoint, save_checkpoint
from aiforge.core.progress import progress
from aiforge.rl.common import EnvError, EpisodeLog, evaluate_policy, make_vector_env, space_dims
from aiforge.rl.common.curves import plot_learning_curves
from aiforge.rl.common.envs import EnvId, final_observations
from aiforge.rl.common.snapshot import loop_state, restore_loop_state


class ReinforceConfig(RecipeConfig):
    env_id: EnvId = "CartPole-v1"
    """Gymnasium environment with a flat Box observation and Discrete actions."""
    updates: int = Field(200, ge=1)
    """Policy-gradient steps; each uses n_envs fresh episodes."""
    n_envs: int = Field(16, ge=1)
    """Episodes per update, collected side by side in vectorised environments."""
    lr: float = Field(2e-3, gt=0)
    """Adam learning rate of the policy."""
    baseline_lr: float = Field(5e-3, gt=0)
    """Adam learning rate of the value baseline."""
    baseline_epochs: int = Field(5, ge=1)
    """Regression steps of the baseline per update."""
    anneal_lr: bool = True
    """Decay both learning rates linearly to 0 over the run."""
    gamma: float = Field(0.99, gt=0, le=1)
    """Discount factor."""
    baseline: bool = True
    """Subtract the learned V(s); False gives plain REINFORCE with reward-to-go."""
    norm_adv: bool = True
    """Normalise G_t - b(s_t) over the batch (a common variance reduction)."""
    hidden: int = Field(64, ge=1)
    """Width of the two hidden layers of policy and baseline."""
    target_return: float | None = 475.0
    """Record when the 100-episode training mean first reaches this (None: do not)."""
    eval_episodes: int = Field(100, ge=1)
    """Greedy (argmax) evaluation episodes after training."""
    checkpoint_every: int = Field(50, ge=1)
    """Updates between resumable checkpoints."""


def mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                         nn.Linear(hidden, n_out))


class PolicyWithBaseline(nn.Module):
    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 64) -> None:
        super().__init__()
        self.policy = mlp(obs_dim, hidden, n_actions)
        self.baseline = mlp(obs_dim, hidden, 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.policy(obs)                              # (B, A) logits

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.baseline(obs).squeeze(-1)                # (B,)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> int:
        return int(self(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)).argmax(-1))


def reward_to_go(rewards: torch.Tensor, gamma: float, tail: float = 0.0) -> torch.Tensor:
    """G_t = r_t + gamma G_{t+1} for one episode (T,), with G_T = `tail` (0 at a terminal
    state, V(s_T) after a time-limit cut)."""
    returns = torch.zeros_like(rewards)
    running = tail
    for t in reversed(range(len(rewards))):
        running = float(rewards[t]) + gamma * running
        returns[t] = running
    return returns


def reinforce_loss(logp: torch.Tensor, returns: torch.Tensor, baseline: torch.Tensor,
                   normalise: bool) -> torch.Tensor:
    """-mean_t log pi(a_t|s_t) (G_t - b(s_t)); the baseline is a constant here (detached)."""
    adv = returns - baseline.detach()                        # (N,)
    if normalise and len(adv) > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    return -(logp * adv).mean()


def build_model(cfg: ReinforceConfig) -> PolicyWithBaseline:
    obs_dim, n_actions, continuous = space_dims(cfg.env_id)
    if continuous:
        raise EnvError(f"this REINFORCE uses a categorical policy; {cfg.env_id} has "
                       "continuous actions")
    return PolicyWithBaseline(obs_dim, n_actions, cfg.hidden)


def collect_episodes(agent: PolicyWithBaseline, envs: gym.vector.VectorEnv, cfg: ReinforceConfig,
                     log: EpisodeLog, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Run every env until it has finished one episode; keep that first episode of each.
    Returns obs (S, obs_dim), actions (S,), reward-to-go (S,) over the S steps of all
    n_envs episodes, and the updated step count."""
    obs, _ = envs.reset()
    n = cfg.n_envs
    trajs: list[dict[str, list]] = [{"obs": [], "act": [], "rew": []} for _ in range(n)]
    tails = [0.0] * n
    active = np.ones(n, dtype=bool)
    while active.any():
        with torch.no_grad():
            actions = Categorical(logits=agent(torch.as_tensor(obs, dtype=torch.float32))).sample()
        next_obs, reward, term, trunc, infos = envs.step(actions.numpy())
        real_next = final_observations(next_obs, infos, term | trunc)
        for i in np.flatnonzero(active):
            trajs[i]["obs"].append(obs[i])
            trajs[i]["act"].append(int(actions[i]))
            trajs[i]["rew"].append(float(reward[i]))
            step += 1
            if term[i] or trunc[i]:
                active[i] = False
                log.add(sum(trajs[i]["rew"]), step)
                if trunc[i] and not term[i] and cfg.baseline:  # bootstrap the cut-off tail
                    with torch.no_grad():
                        tails[i] = float(agent.value(torch.as_tensor(real_next[i]).float()[None]))
        obs = next_obs
    returns = [reward_to_go(torch.tensor(t["rew"]), cfg.gamma, tail)
               for t, tail in zip(trajs, tails, strict=True)]
    all_obs = torch.as_tensor(np.concatenate([np.stack(t["obs"]) for t in trajs]),
                              dtype=torch.float32)                          # (S, obs_dim)
    all_act = torch.tensor([a for t in trajs for a in t["act"]])
    return all_obs, all_act, torch.cat(returns), step


def train(cfg: ReinforceConfig, ctx: RunContext) -> dict[str, float]:
    agent = build_model(cfg)
    pi_opt = torch.optim.Adam(agent.policy.parameters(), lr=cfg.lr)
    v_opt = torch.optim.Adam(agent.baseline.parameters(), lr=cfg.baseline_lr)
    envs = make_vector_env(cfg.env_id, cfg.n_envs, cfg.seed)
    envs.reset(seed=cfg.seed)  # seeds every sub-env once; later resets continue their RNGs
    log, step, start = EpisodeLog(), 0, 0
    if ctx.resume and (ckpt := latest_checkpoint(ctx.checkpoint_dir)) is not None:
        ckpt.load_weights(agent)
        pi_opt.load_state_dict(ckpt.state["pi_opt"])
        v_opt.load_state_dict(ckpt.state["v_opt"])
        restore_loop_state(ckpt.state, envs, log)  # the envs' RNGs draw the next starts
        start, step = ckpt.step, int(ckpt.state["env_steps"])
    with progress(ctx.quiet) as bar:
        task = bar.add_task(f"REINFORCE {cfg.env_id}", total=cfg.updates, completed=start, info="")
        for update in range(start, cfg.updates):
            if cfg.anneal_lr:
                frac = 1 - update / cfg.updates
                pi_opt.param_groups[0]["lr"] = cfg.lr * frac
                v_opt.param_groups[0]["lr"] = cfg.baseline_lr * frac
            obs, actions, returns, step = collect_episodes(agent, envs, cfg, log, step)
            baseline = agent.value(obs) if cfg.baseline else torch.zeros_like(returns)
            logp = Categorical(logits=agent(obs)).log_prob(actions)          # (N,)
            loss = reinforce_loss(logp, returns, baseline, cfg.norm_adv)
            pi_opt.zero_grad()
            loss.backward()
            pi_opt.step()
            v_loss = torch.zeros(())
            if cfg.baseline:  # fit V_phi(s_t) to G_t (Monte Carlo regression)
                for _ in range(cfg.baseline_epochs):
                    v_loss = 0.5 * (agent.value(obs) - returns).pow(2).mean()
                    v_opt.zero_grad()
                    v_loss.backward()
                    v_opt.step()
            ctx.log_metrics({"policy_loss": float(loss.detach()),
                             "baseline_loss": float(v_loss.detach()),
                             "train_return_100": log.recent_mean()}, step=step)
            bar.update(task, advance=1, info=f"return {log.recent_mean():.1f}")
            if (update + 1) % cfg.checkpoint_every == 0 or update + 1 == cfg.updates:
                save_checkpoint(ctx.checkpoint_dir, update + 1, agent,
                                {**loop_state(envs, log), "pi_opt": pi_opt.state_dict(),
                                 "v_opt": v_opt.state_dict(), "env_steps": step},
                                ctx.config.model_dump(mode="json"))
    reached = log.first_reaching(cfg.target_return) if cfg.target_return is not None else None
    envs.close()
    train_seconds = time.perf_counter() - log.started
    agent.eval()
    returns_eval = evaluate_policy(cfg.env_id, agent.act, cfg.eval_episodes, cfg.seed + 10_000)
    plot_learning_curves({"REINFORCE" + (" + baseline" if cfg.baseline else ""): log},
                         ctx.figure_path("learning_curves.png"), f"REINFORCE on {cfg.env_id}",
                         target=cfg.target_return)
    ctx.save_model(agent)
    metrics = {"eval_mean_return": float(returns_eval.mean()),
               "eval_std_return": float(returns_eval.std()), "train_return_100": log.recent_mean(),
               "train_seconds": train_seconds, "episodes": float(len(log.returns)),
               "env_steps": float(step)}
    if reached is not None:
        metrics["steps_to_target"], metrics["seconds_to_target"] = float(reached[0]), reached[1]
    return metrics


RECIPE = register(Recipe(
    name="rl.reinforce",
    step="2",
    topic="RL: REINFORCE with a learned baseline",
    summary="REINFORCE with reward-to-go and a learned value baseline on CartPole-v1.",
    config=ReinforceConfig,
    train=train,
    bar=Bar("eval_mean_return", ">=", 475.0),
    quick_bar=Bar("eval_mean_return", ">=", 100.0),
    budget_s=600,
    quick={"updates": 40, "eval_episodes": 20},
    build_model=build_model,
))
