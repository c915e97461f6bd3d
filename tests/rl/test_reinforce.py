"""REINFORCE: reward-to-go and the loss by hand, learning, determinism, save/load, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aiforge.core import InputError, load_model, run_recipe
from aiforge.rl.common import evaluate_policy
from aiforge.rl.reinforce import reinforce_loss, reward_to_go


def test_reward_to_go_by_hand() -> None:
    rewards = torch.tensor([1.0, 2.0, 3.0])
    assert torch.allclose(reward_to_go(rewards, 0.5), torch.tensor([1 + 1 + 0.75, 2 + 1.5, 3.0]))
    # a time-limit cut bootstraps the tail with V(s_T) = 4
    assert torch.allclose(reward_to_go(rewards, 0.5, tail=4.0),
                          torch.tensor([2.75 + 0.125 * 4, 3.5 + 0.25 * 4, 3 + 0.5 * 4]))


def test_loss_weights_log_probs_by_advantage_and_leaves_the_baseline_alone() -> None:
    logp = torch.tensor([-0.5, -1.0], requires_grad=True)
    baseline = torch.tensor([1.0, 1.0], requires_grad=True)
    loss = reinforce_loss(logp, torch.tensor([3.0, 0.0]), baseline, normalise=False)
    # -(mean of logp * (G - b)) = -((-0.5 * 2) + (-1.0 * -1)) / 2 = 0
    assert float(loss) == pytest.approx(0.0)
    loss.backward()
    assert torch.allclose(logp.grad, torch.tensor([-1.0, 0.5]))  # -(G - b) / N
    assert baseline.grad is None


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reinforce") / "run"
    result = run_recipe("rl.reinforce", quick=True, out=out, track=False, quiet=True)
    assert result.passed, result.metrics
    return out


def test_quick_setting_learns_and_saved_agent_reproduces_it(quick_run: Path) -> None:
    result = json.loads((quick_run / "result.json").read_text())
    assert result["metrics"]["eval_mean_return"] >= 100  # random: about 22
    agent = load_model(quick_run)
    returns = evaluate_policy("CartPole-v1", agent.act, 20, seed=10_000)
    assert returns.mean() == pytest.approx(result["metrics"]["eval_mean_return"])


def test_same_seed_same_weights(tmp_path: Path) -> None:
    tiny = {"updates": 3, "n_envs": 4, "eval_episodes": 1}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        run_recipe("rl.reinforce", seed=seed, out=tmp_path / name, overrides=tiny, track=False,
                   quiet=True)
    wa, wb, wc = (load_model(tmp_path / k).state_dict() for k in "abc")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


@pytest.mark.parametrize("env_id", ["CartPol-v1", "Pendulum-v1"])
def test_bad_environment_is_a_clear_error(tmp_path: Path, env_id: str) -> None:
    with pytest.raises(InputError, match=env_id):  # unknown: at config time; continuous: at build
        run_recipe("rl.reinforce", out=tmp_path / "x", overrides={"env_id": env_id},
                   track=False, quiet=True)
