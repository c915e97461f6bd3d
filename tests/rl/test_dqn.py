"""DQN: the replay buffer, the (double) TD targets by hand, learning, save/load, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from aiforge.core import InputError, load_model, run_recipe
from aiforge.rl.common import ReplayBuffer, evaluate_policy
from aiforge.rl.common.replay import Batch
from aiforge.rl.dqn import QNetwork, td_targets


def fill(buffer: ReplayBuffer, start: int, n: int) -> None:
    """Transitions whose every field encodes their index i."""
    for i in range(start, start + n):
        buffer.add(np.full((1, 2), i, np.float32), np.array([i]), np.array([float(i)]),
                   np.full((1, 2), i + 0.5, np.float32), np.array([i % 2 == 0]))


def test_replay_buffer_wraps_around_overwriting_the_oldest() -> None:
    buffer = ReplayBuffer(capacity=5, obs_dim=2)
    fill(buffer, 0, 3)
    assert len(buffer) == 3 and buffer.pos == 3
    fill(buffer, 3, 4)  # 7 transitions into 5 slots: 0 and 1 are gone
    assert len(buffer) == 5 and buffer.pos == 2
    assert sorted(buffer.actions.tolist()) == [2, 3, 4, 5, 6]
    assert buffer.actions[0] == 5 and buffer.actions[1] == 6     # the oldest slots reused


def test_replay_buffer_samples_whole_transitions_uniformly() -> None:
    buffer = ReplayBuffer(capacity=8, obs_dim=2)
    fill(buffer, 0, 6)  # not full: never sample the empty slots 6 and 7
    batch = buffer.sample(6000, np.random.default_rng(0))
    ids = batch.actions.numpy()
    assert set(ids.tolist()) == set(range(6))
    counts = np.bincount(ids, minlength=6)
    assert counts.min() > 850 and counts.max() < 1150              # uniform: 1000 each
    # the fields of one sample belong to the same transition
    assert torch.equal(batch.obs[:, 0], batch.actions.float())
    assert torch.equal(batch.rewards, batch.actions.float())
    assert torch.equal(batch.next_obs[:, 0], batch.actions.float() + 0.5)
    assert torch.equal(batch.terminated, (batch.actions % 2 == 0).float())


def test_replay_buffer_refuses_to_sample_when_empty() -> None:
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(4, 2).sample(1, np.random.default_rng(0))


class FixedQ(QNetwork):
    def __init__(self, table: list[list[float]]) -> None:
        super().__init__(1, 2)
        self.table = torch.tensor(table)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.table[obs[:, 0].long()]


def test_double_and_vanilla_targets_by_hand() -> None:
    online = FixedQ([[0.0, 0.0], [5.0, 1.0]])   # online prefers action 0 in state 1
    target = FixedQ([[0.0, 0.0], [2.0, 3.0]])   # target prefers action 1 in state 1
    batch = Batch(obs=torch.zeros(2, 1), actions=torch.zeros(2, dtype=torch.long),
                  rewards=torch.tensor([1.0, 1.0]), next_obs=torch.ones(2, 1),
                  terminated=torch.tensor([0.0, 1.0]))
    vanilla = td_targets(batch, target, online, gamma=0.5, double=False)
    double = td_targets(batch, target, online, gamma=0.5, double=True)
    assert torch.allclose(vanilla, torch.tensor([1 + 0.5 * 3.0, 1.0]))  # max of the target net
    assert torch.allclose(double, torch.tensor([1 + 0.5 * 2.0, 1.0]))   # target net at online argmax


def test_dueling_head_is_identifiable() -> None:
    net = QNetwork(4, 3, hidden=8, dueling=True)
    obs = torch.randn(5, 4)
    h = net.body(obs)
    assert torch.allclose(net(obs).mean(-1), net.value_head(h).squeeze(-1), atol=1e-6)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dqn") / "run"
    result = run_recipe("rl.dqn", quick=True, out=out, track=False, quiet=True)
    assert result.passed, result.metrics
    return out


def test_quick_setting_learns_and_saved_agent_reproduces_it(quick_run: Path) -> None:
    result = json.loads((quick_run / "result.json").read_text())
    assert result["metrics"]["eval_mean_return"] >= 100  # random: about 22
    agent = load_model(quick_run)
    returns = evaluate_policy("CartPole-v1", agent.act, 20, seed=10_000)
    assert returns.mean() == pytest.approx(result["metrics"]["eval_mean_return"])


def test_same_seed_same_weights(tmp_path: Path) -> None:
    tiny = {"total_steps": 600, "learning_starts": 100, "eval_every": 300, "select_episodes": 1,
            "eval_episodes": 1}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        run_recipe("rl.dqn", seed=seed, out=tmp_path / name, overrides=tiny, track=False, quiet=True)
    wa, wb, wc = (load_model(tmp_path / k).state_dict() for k in "abc")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


@pytest.mark.parametrize("env_id", ["NoSuchEnv-v0", "Pendulum-v1"])
def test_bad_environment_is_a_clear_error(tmp_path: Path, env_id: str) -> None:
    with pytest.raises(InputError, match=env_id):  # unknown: at config time; continuous: at build
        run_recipe("rl.dqn", out=tmp_path / "x", overrides={"env_id": env_id}, track=False, quiet=True)
