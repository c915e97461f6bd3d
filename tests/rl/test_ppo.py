"""PPO: GAE and the clipped loss by hand, learning, determinism, save/load, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from aiforge.core import ConfigError, load_model, run_recipe
from aiforge.rl.common import EnvError, evaluate_policy, make_env
from aiforge.rl.ppo import ActorCritic, clipped_policy_loss, compute_gae, value_loss


def test_gae_matches_hand_computed_case() -> None:
    # env 0 terminates at t=2; env 1 is truncated at t=1 (bootstraps V(final obs) = 0.6, chain cut).
    rewards = torch.ones(3, 2)
    values = torch.tensor([[0.5, 0.5], [0.4, 0.4], [0.3, 0.3]])
    next_values = torch.tensor([[0.4, 0.4], [0.3, 0.6], [0.2, 0.2]])
    terminated = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    dones = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    adv, ret = compute_gae(rewards, values, next_values, terminated, dones, gamma=0.9, lam=0.8)
    # env 0: delta = (0.86, 0.87, 0.7); A2 = 0.7, A1 = 0.87 + 0.72 * 0.7, A0 = 0.86 + 0.72 * A1
    a1 = 0.87 + 0.72 * 0.7
    expected0 = [0.86 + 0.72 * a1, a1, 0.7]
    # env 1: delta = (0.86, 1 + 0.9 * 0.6 - 0.4, 1 + 0.9 * 0.2 - 0.3); the chain stops at t=1
    expected1 = [0.86 + 0.72 * 1.14, 1.14, 0.88]
    assert torch.allclose(adv[:, 0], torch.tensor(expected0), atol=1e-6)
    assert torch.allclose(adv[:, 1], torch.tensor(expected1), atol=1e-6)
    assert torch.allclose(ret, adv + values)


def test_gae_with_lambda_one_is_the_discounted_return() -> None:
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.3], [-0.2], [0.7]])
    term = torch.tensor([[0.0], [0.0], [1.0]])
    _, ret = compute_gae(rewards, values, torch.tensor([[-0.2], [0.7], [9.0]]), term, term, 0.5, 1.0)
    assert torch.allclose(ret[:, 0], torch.tensor([1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0]))


def test_clipped_loss_matches_hand_computed_case() -> None:
    ratios = torch.tensor([1.5, 0.5, 1.1, 0.5])
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0])
    loss = clipped_policy_loss(ratios.log(), torch.zeros(4), adv, clip_coef=0.2)
    # per sample max(-A r, -A clip(r)): max(-1.5, -1.2) = -1.2; max(-0.5, -0.8) = -0.5;
    # max(1.1, 1.1) = 1.1; max(0.5, 0.8) = 0.8
    assert math.isclose(float(loss), (-1.2 - 0.5 + 1.1 + 0.8) / 4, abs_tol=1e-6)


def test_clipped_loss_gradient_vanishes_outside_the_trust_region() -> None:
    logp = torch.tensor([math.log(1.5)], requires_grad=True)
    clipped_policy_loss(logp, torch.zeros(1), torch.ones(1), 0.2).backward()
    assert logp.grad is not None and float(logp.grad) == 0.0


def test_value_clipping_is_pessimistic() -> None:
    new_v, old_v, ret = torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([3.0])
    assert math.isclose(float(value_loss(new_v, old_v, ret, None)), 0.5)
    # clipped value 0.2 is further from the return: 0.5 * 2.8^2
    assert math.isclose(float(value_loss(new_v, old_v, ret, 0.2)), 0.5 * 2.8**2, rel_tol=1e-6)


def test_gaussian_policy_sums_log_probs_over_action_dims() -> None:
    agent = ActorCritic(3, 2, continuous=True)
    obs = torch.randn(5, 3)
    d = agent.dist(obs)
    actions = d.sample()                                                  # (5, 2)
    assert agent.log_prob(d, actions).shape == (5,)
    assert torch.allclose(agent.log_prob(d, actions), d.log_prob(actions).sum(-1))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ppo") / "run"
    result = run_recipe("rl.ppo", quick=True, out=out, track=False, quiet=True)
    assert result.passed, result.metrics
    return out


def test_quick_setting_learns_cartpole(quick_run: Path) -> None:
    import json

    metrics = json.loads((quick_run / "result.json").read_text())["metrics"]
    assert metrics["eval_mean_return"] >= 150  # a random policy scores about 22
    assert (quick_run / "figures" / "learning_curves.png").is_file()


def test_saved_agent_reproduces_its_evaluation(quick_run: Path) -> None:
    import json

    result = json.loads((quick_run / "result.json").read_text())
    agent = load_model(quick_run)
    returns = evaluate_policy("CartPole-v1", agent.act, 20, seed=10_000)  # the run's eval seeds
    assert returns.mean() == pytest.approx(result["metrics"]["eval_mean_return"])


def test_same_seed_same_numbers(tmp_path: Path) -> None:
    tiny = {"total_steps": 1024, "epochs": 2, "eval_episodes": 2}
    a = run_recipe("rl.ppo", seed=3, out=tmp_path / "a", overrides=tiny, track=False, quiet=True)
    b = run_recipe("rl.ppo", seed=3, out=tmp_path / "b", overrides=tiny, track=False, quiet=True)
    run_recipe("rl.ppo", seed=4, out=tmp_path / "c", overrides=tiny, track=False, quiet=True)
    wa, wb, wc = (load_model(tmp_path / k).state_dict() for k in "abc")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert a.metrics["episodes"] == b.metrics["episodes"]


def test_continuous_actions_run_on_pendulum(tmp_path: Path) -> None:
    tiny = {"env_id": "Pendulum-v1", "total_steps": 512, "n_envs": 2, "n_steps": 64, "epochs": 1,
            "eval_episodes": 1, "target_return": None}
    run_recipe("rl.ppo", out=tmp_path / "p", overrides=tiny, track=False, quiet=True)
    agent = load_model(tmp_path / "p")
    assert agent.act(torch.zeros(3).numpy()).shape == (1,)


def test_bad_environment_id_fails_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NoSuchEnv-v0"):
        run_recipe("rl.ppo", out=tmp_path / "x", overrides={"env_id": "NoSuchEnv-v0"},
                   track=False, quiet=True)
    assert not (tmp_path / "x").exists()


def test_make_env_names_the_registered_versions() -> None:
    with pytest.raises(EnvError, match="CartPole-v1"):
        make_env("CartPole-v9")
