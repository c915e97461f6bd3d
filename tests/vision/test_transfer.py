"""Transfer learning: the source data, layer groups, the three ways, weights=PATH, quick bar."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aiforge.core import InputError, load_model, run_recipe
from aiforge.vision.transfer import (
    TransferConfig,
    adapt,
    build_model,
    head,
    layer_groups,
    render_printed_digits,
)


def test_printed_digits_look_like_the_target() -> None:
    x, y = render_printed_digits(40, seed=0)
    assert x.shape == (40, 1, 8, 8) and y.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert x.min() >= 0 and x.max() <= 1 and x.mean() > 0.15, "digits fill the 8x8 box"
    again, _ = render_printed_digits(40, seed=0)
    assert torch.equal(x, again)


@pytest.mark.parametrize("arch", ["resnet18", "vgg11_bn", "efficientnet_b0"])
def test_layer_groups_cover_the_network(arch: str) -> None:
    model = build_model(TransferConfig(arch=arch))
    grouped = {id(p) for g in layer_groups(model, arch) for p in g.parameters()}
    assert grouped == {id(p) for p in model.parameters()}
    assert head(model, arch).out_features == 10
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_linear_probe_changes_only_the_head_and_finetune_thaws_top_down() -> None:
    cfg = TransferConfig(input_size=16, epochs=2, batch_size=8)
    start = build_model(cfg).state_dict()
    x, y = torch.randn(16, 3, 16, 16), torch.arange(16) % 10
    probe = adapt("linear_probe", start, cfg, x, y)
    state = probe.state_dict()
    changed = {k for k in start if not torch.equal(start[k], state[k])}
    assert changed == {"fc.weight", "fc.bias"}, "frozen backbone, frozen BatchNorm statistics"
    tuned = adapt("finetune", start, cfg, x, y).state_dict()
    assert not torch.equal(tuned["layer4.0.conv1.weight"], start["layer4.0.conv1.weight"])
    assert torch.equal(tuned["conv1.weight"], start["conv1.weight"]), "2 epochs thaw the top 2 groups only"


def test_vgg_needs_32_pixels() -> None:
    with pytest.raises(InputError, match="input_size >= 32"):
        TransferConfig.from_dict({"arch": "vgg11_bn", "input_size": 16})


def test_weights_file(tmp_path: Path) -> None:
    reference = build_model(TransferConfig())
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)
    run = run_recipe("vision.transfer", quick=True, out=tmp_path / "run", track=False, quiet=True,
                     overrides={"weights": str(path), "epochs": 1})
    assert "source_val_accuracy" not in run.metrics   # no pre-training when weights are given
    with pytest.raises(InputError, match="not found"):
        run_recipe("vision.transfer", quick=True, out=tmp_path / "bad", track=False, quiet=True,
                   overrides={"weights": str(tmp_path / "missing.pth")})


def test_quick_bar_and_save_load(tmp_path: Path) -> None:
    result = run_recipe("vision.transfer", quick=True, out=tmp_path / "q", track=False, quiet=True)
    assert result.passed, result.metrics
    assert result.metrics["acc_finetune"] > result.metrics["acc_scratch"]
    assert "figures/transfer_comparison.png" in result.artifacts
    model = load_model(tmp_path / "q")
    assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 10)
