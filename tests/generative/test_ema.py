"""The moving average of weights: its update against the formula by hand, and its warm-up."""

import pytest
import torch
from torch import nn

from aiforge.generative.ema import EMA, ema_decay_at


def test_decay_warms_up_then_stays_at_the_configured_value():
    assert ema_decay_at(0.999, 0) == pytest.approx(0.1)             # (1 + 0) / (10 + 0)
    assert ema_decay_at(0.999, 90) == pytest.approx(91 / 100)
    assert ema_decay_at(0.999, 100_000) == 0.999


def test_update_follows_the_formula_by_hand():
    net = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 2.0]]))
    ema = EMA(net, decay=0.5)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[3.0, -2.0]]))
    ema.update(net)                  # d_0 = min(0.5, 1/10) = 0.1: 0.1 * [1, 2] + 0.9 * [3, -2]
    torch.testing.assert_close(ema.model.weight, torch.tensor([[2.8, -1.6]]))
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.0, 0.0]]))
    ema.update(net)                  # d_1 = min(0.5, 2/11) = 2/11
    torch.testing.assert_close(ema.model.weight, torch.tensor([[2.8, -1.6]]) * 2 / 11)
    assert int(ema.updates) == 2
    assert not ema.model.weight.requires_grad


def test_the_copy_stays_in_eval_mode_and_in_the_state_dict():
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    ema = EMA(net, 0.9).train()
    assert not ema.model.training
    assert {"model.0.weight", "model.0.bias", "updates"} <= set(ema.state_dict())
    with pytest.raises(ValueError, match="decay"):
        EMA(net, 1.0)
