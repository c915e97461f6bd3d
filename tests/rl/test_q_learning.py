"""Tabular Q-learning and SARSA: the update by hand, learning on Taxi, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aiforge.core import ConfigError, load_model, run_recipe
from aiforge.rl.q_learning import QLearningConfig, epsilon_greedy, greedy_returns, learn


def test_epsilon_greedy_breaks_ties_at_random_and_explores() -> None:
    rng = np.random.default_rng(0)
    picks = [epsilon_greedy(np.array([1.0, 1.0, 0.0]), 0.0, rng) for _ in range(400)]
    assert set(picks) == {0, 1}
    explore = [epsilon_greedy(np.array([9.0, 0.0, 0.0]), 1.0, rng) for _ in range(400)]
    assert set(explore) == {0, 1, 2}


@pytest.mark.parametrize("method", ["q-learning", "sarsa"])
def test_learns_taxi_from_scratch(method: str) -> None:
    cfg = QLearningConfig(episodes=3000)
    Q, log = learn("Taxi-v4", method, 3000, 0.5, cfg, np.random.default_rng(0))
    assert np.mean(log.returns[-100:]) > np.mean(log.returns[:100]) + 100
    assert greedy_returns("Taxi-v4", Q, 200, seed=0).mean() >= 6.0  # random: about -770


def test_quick_run_passes_and_saved_table_acts_the_same(tmp_path: Path) -> None:
    result = run_recipe("rl.q-learning", quick=True, out=tmp_path / "q", track=False, quiet=True)
    assert result.passed, result.metrics
    model = load_model(tmp_path / "q")
    Q = model.q.numpy()
    returns = greedy_returns("Taxi-v4", Q, 200, seed=0)
    assert returns.mean() == pytest.approx(result.metrics["main_q_learning_mean_return"])
    assert all(model.act(s) == int(Q[s].argmax()) for s in range(500))
    again = run_recipe("rl.q-learning", quick=True, out=tmp_path / "q2", track=False, quiet=True)
    for key in ("main_q_learning_mean_return", "main_sarsa_mean_return"):
        assert again.metrics[key] == result.metrics[key]
    assert json.loads((tmp_path / "q" / "result.json").read_text())["passed"]  # same seed, same numbers


def test_bad_environment_id_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Taxi-v9"):
        run_recipe("rl.q-learning", out=tmp_path / "x", overrides={"env_id": "Taxi-v9"},
                   track=False, quiet=True)
