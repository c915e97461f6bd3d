"""Linear contextual bandits: the ridge / LinUCB statistics against a hand-computed case, the
Thompson posterior against Bayesian linear regression, exploration rules, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aiforge.rl.bandits import EpsilonGreedy, LinearBandit, LinearThompson, LinUCB


def test_linucb_update_and_scores_by_hand() -> None:
    bandit = LinUCB(dim=2, reg=1.0, alpha=2.0)
    bandit.update(np.array([1.0, 0.0]), 1.0)
    bandit.update(np.array([1.0, 1.0]), 0.0)
    # A = I + [[1,0],[0,0]] + [[1,1],[1,1]] = [[3,1],[1,2]], det 5
    a_inv = np.array([[2.0, -1.0], [-1.0, 3.0]]) / 5
    np.testing.assert_allclose(bandit.a_inv, a_inv, atol=1e-12)
    np.testing.assert_allclose(bandit.b.numpy(), [1.0, 0.0])
    np.testing.assert_allclose(bandit.theta(), [0.4, -0.2], atol=1e-12)   # A^-1 b
    arms = np.array([[1.0, 0.0], [0.0, 1.0]])
    # arm 0: 0.4 + 2 sqrt(2/5) = 1.665; arm 1: -0.2 + 2 sqrt(3/5) = 1.349
    np.testing.assert_allclose(bandit.ucb(arms), [0.4 + 2 * np.sqrt(0.4), -0.2 + 2 * np.sqrt(0.6)])
    assert bandit.select(arms, np.random.default_rng(0)) == 0
    # arm 1 is the less explored (wider interval): enough optimism picks it
    bandit.alpha = 20.0
    assert bandit.select(arms, np.random.default_rng(0)) == 1


def test_sherman_morrison_matches_a_direct_inverse() -> None:
    rng = np.random.default_rng(0)
    bandit = LinearBandit(dim=4, reg=0.5)
    xs = rng.normal(size=(50, 4))
    for x in xs:
        bandit.update(x, float(rng.normal()))
    np.testing.assert_allclose(bandit.a_inv, np.linalg.inv(0.5 * np.eye(4) + xs.T @ xs), atol=1e-10)


def test_thompson_posterior_is_bayesian_linear_regression() -> None:
    rng = np.random.default_rng(1)
    theta_star = np.array([1.0, -2.0, 0.5])
    xs = rng.normal(size=(40, 3))
    rs = xs @ theta_star + 0.3 * rng.normal(size=40)
    bandit = LinearThompson(dim=3, reg=2.0, v=0.3)
    for x, r in zip(xs, rs, strict=True):
        bandit.update(x, float(r))
    # prior N(0, v^2 / lambda I), noise v^2: posterior N((lambda I + X^T X)^-1 X^T r, v^2 (...)^-1)
    precision = 2.0 * np.eye(3) + xs.T @ xs
    mean, cov = bandit.posterior()
    np.testing.assert_allclose(mean, np.linalg.solve(precision, xs.T @ rs), atol=1e-10)
    np.testing.assert_allclose(cov, 0.09 * np.linalg.inv(precision), atol=1e-12)
    draws = np.stack([bandit.sample_theta(rng) for _ in range(20_000)])
    np.testing.assert_allclose(draws.mean(0), mean, atol=4 * np.sqrt(cov.diagonal().max() / 20_000))
    np.testing.assert_allclose(np.cov(draws.T), cov, rtol=0, atol=0.05 * cov.diagonal().max())


def test_epsilon_greedy_explores_at_its_rate() -> None:
    arms = np.eye(4)
    greedy = EpsilonGreedy(dim=4, epsilon=0.0)
    greedy.update(arms[2], 1.0)
    rng = np.random.default_rng(0)
    assert all(greedy.select(arms, rng) == 2 for _ in range(100))
    explorer = EpsilonGreedy(dim=4, epsilon=1.0)
    explorer.update(arms[2], 1.0)
    counts = np.bincount([explorer.select(arms, rng) for _ in range(4000)], minlength=4)
    assert counts.min() > 850                                                 # uniform: 1000 each


@pytest.mark.parametrize("cls", [EpsilonGreedy, LinUCB, LinearThompson])
def test_state_dict_round_trip(cls: type[LinearBandit]) -> None:
    rng = np.random.default_rng(2)
    bandit = cls(3)
    for _ in range(10):
        bandit.update(rng.normal(size=3), float(rng.normal()))
    clone = cls(3)
    clone.load_state_dict(bandit.state_dict())
    np.testing.assert_array_equal(clone.theta(), bandit.theta())
    clone.update(np.ones(3), 1.0)                # updates still reach the loaded buffers
    assert not torch.equal(clone.A_inv, bandit.A_inv)
    np.testing.assert_allclose(clone.state_dict()["A_inv"].numpy(), clone.a_inv)
