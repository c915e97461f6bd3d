"""Value and policy iteration against the Bellman equations and each other."""

import numpy as np
import pytest

from aiforge.rl.value_iteration import (
    evaluate_exact,
    evaluate_iterative,
    frozen_lake_mdp,
    greedy,
    policy_iteration,
    q_values,
    value_iteration,
)

GAMMA = 0.99


@pytest.fixture(scope="module", params=["4x4", "8x8"])
def mdp(request):
    return frozen_lake_mdp(request.param)


def test_transition_rows_are_distributions_or_absorbing(mdp):
    sums = mdp.P.sum(axis=2)
    # each action from a live state leads somewhere with probability 1, part of which may be
    # into a terminal state (whose value is 0 and which has been cut from P)
    assert np.all(sums <= 1 + 1e-12) and np.all(sums >= 0)


def test_value_iteration_reaches_a_bellman_fixed_point(mdp):
    V, residuals = value_iteration(mdp, GAMMA, 1e-10, 100_000)
    assert residuals[-1] < 1e-8
    assert np.abs(q_values(mdp, V, GAMMA).max(axis=1) - V).max() < 1e-8


def test_iterative_policy_evaluation_matches_the_linear_solve(mdp):
    policy = np.random.default_rng(0).integers(0, 4, size=mdp.R.shape[0])
    assert np.abs(evaluate_iterative(mdp, policy, GAMMA, 1e-12) - evaluate_exact(mdp, policy, GAMMA)).max() < 1e-6


def test_value_and_policy_iteration_agree(mdp):
    V_vi, _ = value_iteration(mdp, GAMMA, 1e-12, 100_000)
    policy, V_pi, _ = policy_iteration(mdp, GAMMA)
    assert np.abs(V_vi - V_pi).max() < 1e-8
    assert np.array_equal(greedy(mdp, V_vi, GAMMA), policy)


def test_the_optimal_policy_beats_every_one_step_change(mdp):
    policy, V, _ = policy_iteration(mdp, GAMMA)
    rng = np.random.default_rng(1)
    for _ in range(20):
        other = policy.copy()
        s = rng.integers(len(policy))
        other[s] = (other[s] + rng.integers(1, 4)) % 4
        assert np.all(evaluate_exact(mdp, other, GAMMA) <= V + 1e-10)


def test_full_recipe_meets_its_bar(tmp_path):
    from aiforge.core import load_model, run_recipe
    result = run_recipe("rl.value-iteration", out=tmp_path, quiet=True, track=False)
    assert result.passed and result.metrics["success_rate_4x4"] >= 0.70
    assert result.metrics["4x4_policies_agree"] == 1.0 and result.metrics["8x8_policies_agree"] == 1.0
    policy = load_model(tmp_path)
    import torch
    assert policy(torch.tensor([0])).item() == policy.actions[0].item()
