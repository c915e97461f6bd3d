"""rl.robotics: PPO learns to balance MuJoCo's InvertedPendulum on the quick budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aiforge.core import load_model, run_recipe
from aiforge.rl.commands import play


def test_quick_setting_balances_the_pole(tmp_path: Path) -> None:
    pytest.importorskip("mujoco")
    result = run_recipe("rl.robotics", quick=True, out=tmp_path / "r", track=False, quiet=True)
    assert result.passed, result.metrics  # an untrained policy falls within about 10 steps
    agent = load_model(tmp_path / "r")
    assert agent.act(np.zeros(4, dtype=np.float32)).shape == (1,)
    replay = play("rl.robotics", tmp_path / "r", episodes=10, seed=result.seed + 10_000)
    assert replay["mean_return"] == pytest.approx(result.metrics["eval_mean_return"])
