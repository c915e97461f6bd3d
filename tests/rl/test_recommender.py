"""rl.recommender: the user simulator's documented dynamics (determinism, position bias,
fatigue, leaving), a bandit learning on a tiny budget, the recipe's bar, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aiforge.core import load_model, run_recipe
from aiforge.rl.bandits import LinUCB
from aiforge.rl.recommender import (
    RecommenderConfig,
    bandit_features,
    evaluate,
    run_bandit,
    shelf_vectors,
)
from aiforge.rl.recommender_env import UserChoiceEnv, UserSimConfig, sigmoid


def rollout(env: UserChoiceEnv, seed: int, actions: list[int]) -> list[tuple]:
    obs, _ = env.reset(seed=seed)
    out = [tuple(obs)]
    for a in actions:
        obs, reward, term, trunc, info = env.step(a)
        out.append((*obs, reward, term, trunc, *info["clicked"]))
        if term or trunc:
            break
    return out


def test_same_seed_same_session() -> None:
    actions = [0, 5, 5, 3, 9, 1, 0, 0, 2, 7]
    a = rollout(UserChoiceEnv(), 3, actions)
    b = rollout(UserChoiceEnv(), 3, actions)
    c = rollout(UserChoiceEnv(), 4, actions)
    assert a == b
    assert a != c


def test_catalogue_is_fixed_and_shelves_start_with_their_anchor() -> None:
    env, other = UserChoiceEnv(), UserChoiceEnv()
    np.testing.assert_array_equal(env.items, other.items)
    np.testing.assert_allclose(np.linalg.norm(env.items, axis=1), 1.0)
    assert (env.shelves[:, 0] == np.arange(env.cfg.n_items)).all()
    assert env.action_space.n == env.cfg.n_items
    assert env.observation_space.shape == (2 * env.cfg.n_topics + 1,)


def test_position_bias_follows_the_examination_model() -> None:
    env = UserChoiceEnv(UserSimConfig(position_decay=1.0))
    env.reset(seed=0)
    same = np.array([4, 4, 4])  # one item at every position: only examination differs
    p = env.click_probabilities(same)
    np.testing.assert_allclose(p / p[0], [1, 1 / 2, 1 / 3])
    flat = UserChoiceEnv(UserSimConfig(position_decay=0.0))
    flat.reset(seed=0)
    np.testing.assert_allclose(flat.click_probabilities(same), p[0])
    # and in sampled clicks: position 0 of the shelf is clicked most often
    clicks = np.zeros(3)
    for k in range(300):
        env.reset(seed=k)
        fav = int(np.argmax(env.items @ env.user))
        clicks += env.step(fav)[4]["clicked"]
    assert clicks[0] > clicks[1] > clicks[2]


def test_fatigue_grows_with_repetition_and_decays_otherwise() -> None:
    cfg = UserSimConfig()
    env = UserChoiceEnv(cfg)
    env.reset(seed=1)
    fav = int(np.argmax(env.items @ env.user))
    other = int(np.argmin(env.items @ env.items[fav]))      # the least similar item
    first = env.click_probabilities(env.shelves[fav]).sum()
    boredom = [float(env.boredom(np.array([fav]))[0])]
    for _ in range(5):
        env.step(fav)
        boredom.append(float(env.boredom(np.array([fav]))[0]))
    assert boredom[0] == 0.0 and all(np.diff(boredom) > 0)   # grows with each repeat
    assert env.click_probabilities(env.shelves[fav]).sum() < first
    # showing something else: beta_fav' = decay * beta_fav + (1 - decay) v_fav . mean(shelf)
    before = boredom[-1]
    env.step(other)
    expected = (cfg.boredom_decay * before + (1 - cfg.boredom_decay)
                * float(env.items[env.shelves[other]].mean(0) @ env.items[fav]))
    assert env.boredom(np.array([fav]))[0] == pytest.approx(expected)
    assert expected < before


def test_leaving_follows_satisfaction() -> None:
    env = UserChoiceEnv()
    env.reset(seed=2)
    shelf = env.shelves[0]
    c = env.cfg
    assert env.leave_probability(shelf, 0.0) == pytest.approx(float(sigmoid(c.leave_bias)))
    assert env.leave_probability(shelf, 2.0) < env.leave_probability(shelf, 0.0)
    env.exposure = env.items[shelf].mean(0)                  # bored of this shelf
    assert env.leave_probability(shelf, 0.0) > float(sigmoid(c.leave_bias))


def test_greedy_clicking_shortens_sessions() -> None:
    """The premise of the recipe: the best next-click shelf, repeated, loses the user sooner
    than a shelf rotation that gives up some clicks per step."""
    env = UserChoiceEnv()
    myopic = evaluate(env, lambda obs: int(np.argmax(env.expected_clicks())), 300, 0)
    random = evaluate(env, lambda obs: int(env.np_random.integers(env.cfg.n_items)), 300, 0)
    assert myopic[1].mean() < random[1].mean()               # shorter sessions
    assert myopic[0].mean() > random[0].mean()               # but more clicks per session


def test_linucb_learns_on_a_tiny_budget() -> None:
    cfg = RecommenderConfig(steps=1500)
    env = UserChoiceEnv(cfg.sim)
    shelves = shelf_vectors(env)
    bandit = LinUCB(2 * cfg.sim.n_topics + 2, cfg.reg, cfg.ucb_alpha)
    trace = run_bandit(bandit, cfg, shelves, seed=0)
    regret = np.asarray(trace.regret)
    assert regret[-500:].mean() < 0.5 * regret[:500].mean()  # regret per step falls
    learned = evaluate(env, lambda obs: bandit.greedy(bandit_features(obs, shelves)), 200, 10_000)[0]
    rng = np.random.default_rng(0)
    random = evaluate(env, lambda obs: int(rng.integers(cfg.sim.n_items)), 200, 10_000)[0]
    assert learned.mean() > random.mean() + 2.0


def test_same_seed_same_run(tmp_path: Path) -> None:
    tiny = {"steps": 400, "learning_starts": 100, "select_every": 200, "select_episodes": 5,
            "eval_episodes": 20}
    results = [run_recipe("rl.recommender", seed=s, out=tmp_path / n, overrides=tiny,
                          track=False, quiet=True).metrics for n, s in (("a", 1), ("b", 1), ("c", 2))]
    assert results[0] == results[1]
    assert results[0] != results[2]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    out = tmp_path_factory.mktemp("recommender") / "run"
    result = run_recipe("rl.recommender", quick=True, out=out, track=False, quiet=True)
    return out, result.metrics


def test_quick_setting_rl_beats_every_bandit_and_all_beat_random(
        quick_run: tuple[Path, dict[str, float]]) -> None:
    _, m = quick_run
    bandits = [m["return_epsilon_greedy"], m["return_linucb"], m["return_thompson"]]
    assert all(b > m["return_random"] for b in bandits), m
    assert m["return_dqn"] > max(bandits), m
    assert m["bar_margin"] > 0


def test_saved_agents_reproduce_their_evaluation(quick_run: tuple[Path, dict[str, float]]) -> None:
    out, m = quick_run
    agents = load_model(out)
    cfg = RecommenderConfig()  # the quick run uses the default simulator
    env = UserChoiceEnv(cfg.sim)
    returns = evaluate(env, agents.act, 300, 10_000)[0]
    assert returns.mean() == pytest.approx(m["return_dqn"])
    linucb = evaluate(env, lambda obs: agents.bandit_act("linucb", obs), 300, 10_000)[0]
    assert linucb.mean() == pytest.approx(m["return_linucb"])
    assert isinstance(agents.q(torch.zeros(2, 2 * cfg.sim.n_topics + 1)), torch.Tensor)
