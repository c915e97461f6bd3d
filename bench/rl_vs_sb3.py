"""aiforge PPO and DQN against Stable-Baselines3 PPO and DQN on CartPole-v1.

Same environment, same step budget, same evaluation (100 deterministic episodes on the same
seeds), one torch thread per run, `--seeds` seeds per system. For each (algorithm, system):
final evaluation return (mean ± std over seeds), seeds whose evaluation is >= 475, and wall
seconds from the start of learning until the 100-episode mean training return first
reached 475; then the ratio aiforge / SB3 of the mean seconds. SB3 runs with the RL Zoo's
tuned CartPole hyperparameters. Stable-Baselines3 is a benchmark dependency only.

    python bench/rl_vs_sb3.py --seeds 5 --out bench/results/rl_vs_sb3.json

Runs go one at a time unless `--parallel N`; parallel runs share the CPU, so compare ratios
from the same invocation only. Each result is also printed as one JSON line. `--algos` and
`--systems` run a piece of the grid; the pieces merge into `--out` (runs of an (algorithm,
system) pair that was re-run are replaced, the others kept), and every run records the
invocation it came from, so a reader can tell which ratios were measured side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

TARGET = 475.0
EVAL_EPISODES = 100
EVAL_SEED = 10_000  # the aiforge recipes evaluate on seeds 10_000 + seed + k; SB3 gets the same


def run_aiforge(algo: str, seed: int) -> dict[str, Any]:
    import torch

    from aiforge.core.context import RunContext
    from aiforge.core.seeding import seed_everything
    from aiforge.rl import dqn, ppo

    module = {"ppo": ppo, "dqn": dqn}[algo]
    cfg = module.RECIPE.config.from_dict({"seed": seed})
    seed_everything(seed, 1)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = RunContext(recipe=module.RECIPE.name, out=Path(tmp), config=cfg, quiet=True)
        started = time.perf_counter()
        metrics = module.RECIPE.train(cfg, ctx)
        wall = time.perf_counter() - started
    return {"system": "aiforge", "algo": algo, "seed": seed, "steps": cfg.total_steps,
            "eval_mean_return": metrics["eval_mean_return"],
            "seconds_to_target": metrics.get("seconds_to_target"),
            "steps_to_target": metrics.get("steps_to_target"), "wall_seconds": wall,
            "seconds_to_greedy_target": metrics.get("seconds_to_greedy_target")}


def sb3_model(algo: str, seed: int):
    """SB3 with the RL Zoo's hyperparameters for CartPole-v1 (rl-baselines3-zoo hyperparams)."""
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.env_util import make_vec_env

    if algo == "ppo":
        def linear(start: float):
            return lambda progress: progress * start
        env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
        return PPO("MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98,
                   n_epochs=20, ent_coef=0.0, learning_rate=linear(1e-3), clip_range=linear(0.2),
                   seed=seed, device="cpu", verbose=0)
    env = make_vec_env("CartPole-v1", n_envs=1, seed=seed)
    return DQN("MlpPolicy", env, learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
               learning_starts=1000, gamma=0.99, target_update_interval=10, train_freq=256,
               gradient_steps=128, exploration_fraction=0.16, exploration_final_eps=0.04,
               policy_kwargs={"net_arch": [256, 256]}, seed=seed, device="cpu", verbose=0)


def run_sb3(algo: str, seed: int, steps: int) -> dict[str, Any]:
    import numpy as np
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    from aiforge.rl.common import evaluate_policy

    torch.set_num_threads(1)

    class TimeToTarget(BaseCallback):
        """Wall seconds (from learn start) when the 100-episode training mean reaches TARGET."""

        def __init__(self) -> None:
            super().__init__()
            self.returns: list[float] = []
            self.started = time.perf_counter()
            self.reached: tuple[int, float] | None = None

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.returns.append(float(info["episode"]["r"]))
                    if (self.reached is None and len(self.returns) >= 100
                            and np.mean(self.returns[-100:]) >= TARGET):
                        self.reached = (self.num_timesteps, time.perf_counter() - self.started)
            return True

    model = sb3_model(algo, seed)
    callback = TimeToTarget()
    started = time.perf_counter()
    model.learn(total_timesteps=steps, callback=callback)
    wall = time.perf_counter() - started

    def act(obs: np.ndarray) -> int:
        return int(model.predict(obs, deterministic=True)[0])

    returns = evaluate_policy("CartPole-v1", act, EVAL_EPISODES, EVAL_SEED + seed)
    return {"system": "sb3", "algo": algo, "seed": seed, "steps": steps,
            "eval_mean_return": float(returns.mean()),
            "seconds_to_target": callback.reached[1] if callback.reached else None,
            "steps_to_target": callback.reached[0] if callback.reached else None,
            "wall_seconds": wall}


def job(system: str, algo: str, seed: int, steps: int) -> dict[str, Any]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    row = run_aiforge(algo, seed) if system == "aiforge" else run_sb3(algo, seed, steps)
    print(json.dumps(row), flush=True)
    return row


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """(mean, population std); (None, None) for no values, so that the JSON stays valid."""
    if not values:
        return None, None
    return statistics.fmean(values), statistics.pstdev(values)


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for algo in sorted({r["algo"] for r in rows}):
        per: dict[str, dict[str, Any]] = {}
        for system in ("aiforge", "sb3"):
            mine = [r for r in rows if r["algo"] == algo and r["system"] == system]
            ret_m, ret_s = mean_std([r["eval_mean_return"] for r in mine])
            hit = [r["seconds_to_target"] for r in mine if r["seconds_to_target"] is not None]
            sec_m, sec_s = mean_std(hit)
            per[system] = {"seeds": len(mine), "eval_return_mean": ret_m, "eval_return_std": ret_s,
                           "seeds_eval_ge_475": sum(r["eval_mean_return"] >= TARGET for r in mine),
                           "seeds_reaching_475": len(hit), "seconds_to_475_mean": sec_m,
                           "seconds_to_475_std": sec_s,
                           "wall_seconds_mean": mean_std([r["wall_seconds"] for r in mine])[0]}
        a, b = per["aiforge"]["seconds_to_475_mean"], per["sb3"]["seconds_to_475_mean"]
        ratio = a / b if a is not None and b is not None else None  # None: a side never got there
        invocations = sorted({r.get("invocation", "unrecorded") for r in rows if r["algo"] == algo})
        out.append({"algo": algo, "aiforge": per["aiforge"], "sb3": per["sb3"],
                    "time_ratio_aiforge_over_sb3": ratio,
                    "same_invocation": len(invocations) == 1, "invocations": invocations})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=["ppo", "dqn"], choices=["ppo", "dqn"])
    parser.add_argument("--systems", nargs="+", default=["aiforge", "sb3"],
                        choices=["aiforge", "sb3"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=1, help="processes at once")
    parser.add_argument("--out", type=Path, default=Path("bench/results/rl_vs_sb3.json"))
    args = parser.parse_args()

    from aiforge.rl import dqn, ppo

    budgets = {"ppo": ppo.PPOConfig().total_steps, "dqn": dqn.DQNConfig().total_steps}
    jobs = [(system, algo, seed, budgets[algo]) for algo in args.algos
            for seed in range(args.seeds) for system in args.systems]
    invocation = time.strftime("%Y-%m-%dT%H:%M:%S")
    with ProcessPoolExecutor(args.parallel, mp_context=get_context("spawn")) as pool:
        rows = [{**row, "invocation": invocation}
                for row in pool.map(job, *zip(*jobs, strict=True))]
    rerun = {(algo, system) for algo in args.algos for system in args.systems}
    if args.out.is_file():  # keep the earlier runs of every pair not re-run now
        earlier = json.loads(args.out.read_text())["runs"]
        rows = [r for r in earlier if (r["algo"], r["system"]) not in rerun] + rows
    report = {"env": "CartPole-v1", "target": TARGET, "eval_episodes": EVAL_EPISODES,
              "budgets": budgets, "parallel": args.parallel, "cpu_count": os.cpu_count(),
              "summary": summarise(rows), "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for line in report["summary"]:
        print(json.dumps(line))


if __name__ == "__main__":
    main()
