"""Resumable RL training: a run killed right after a checkpoint and resumed with `--resume`
ends with the same weights and metrics as a run that was never interrupted."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from aiforge.core import load_model, run_recipe
from aiforge.rl.common import make_vector_env
from aiforge.rl.common.snapshot import set_vector_env_state, vector_env_state

# wall-clock figures differ between any two runs; everything else must be equal
CLOCK = {"train_seconds", "seconds_to_target", "seconds_to_greedy_target"}


class Killed(Exception):
    """Stands for the process dying (power cut, OOM kill) right after a checkpoint."""


def kill_after_first_checkpoint(monkeypatch: pytest.MonkeyPatch, module_name: str) -> None:
    module = importlib.import_module(module_name)
    real = module.save_checkpoint

    def save_then_die(*args: Any, **kwargs: Any) -> Path:
        real(*args, **kwargs)
        monkeypatch.setattr(module, "save_checkpoint", real)  # the resumed run saves normally
        raise Killed

    monkeypatch.setattr(module, "save_checkpoint", save_then_die)


CASES = {
    "rl.ppo": ("aiforge.rl.ppo", {"total_steps": 3072, "checkpoint_every": 1024, "epochs": 2,
                                  "eval_episodes": 2}),
    # a buffer smaller than the steps, so that the resumed ring has wrapped around
    "rl.dqn": ("aiforge.rl.dqn", {"total_steps": 600, "learning_starts": 100, "buffer_size": 250,
                                  "checkpoint_every": 300, "eval_every": 200,
                                  "select_episodes": 1, "eval_episodes": 2}),
    "rl.reinforce": ("aiforge.rl.reinforce", {"updates": 4, "n_envs": 4, "checkpoint_every": 2,
                                              "eval_episodes": 2}),
}


@pytest.mark.parametrize("recipe", sorted(CASES))
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(
        recipe: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module_name, tiny = CASES[recipe]
    whole = run_recipe(recipe, seed=5, out=tmp_path / "whole", overrides=tiny, track=False,
                       quiet=True)
    kill_after_first_checkpoint(monkeypatch, module_name)
    with pytest.raises(Killed):
        run_recipe(recipe, seed=5, out=tmp_path / "cut", overrides=tiny, track=False, quiet=True)
    assert not (tmp_path / "cut" / "result.json").exists()
    assert len(list((tmp_path / "cut" / "checkpoints").iterdir())) == 1
    resumed = run_recipe(recipe, resume=tmp_path / "cut", track=False, quiet=True)

    wa, wb = load_model(tmp_path / "whole").state_dict(), load_model(tmp_path / "cut").state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert {k: v for k, v in whole.metrics.items() if k not in CLOCK} == \
        {k: v for k, v in resumed.metrics.items() if k not in CLOCK}


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "InvertedPendulum-v5"])
def test_restored_environments_continue_the_same_trajectories(env_id: str) -> None:
    a, b = make_vector_env(env_id, 2, 0), make_vector_env(env_id, 2, 0)
    a.reset(seed=0)
    b.reset(seed=99)  # a different state, to be overwritten
    rng = np.random.default_rng(0)
    for _ in range(250):  # long enough for CartPole's episodes to end and restart
        a.step(a.action_space.sample() if env_id != "CartPole-v1" else rng.integers(0, 2, 2))
    set_vector_env_state(b, vector_env_state(a))
    a.action_space.seed(1)
    b.action_space.seed(1)
    for _ in range(300):
        action = a.action_space.sample()
        out_a, out_b = a.step(action), b.step(action)
        for x, y in zip(out_a[:4], out_b[:4], strict=True):
            assert np.array_equal(x, y)
