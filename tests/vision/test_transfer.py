"""Transfer learning: the source data, layer groups, the three ways, weights=PATH, quick bar."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aiforge.core import InputError, get_recipe, load_model, run_recipe
from aiforge.core.seeding import seed_everything
from aiforge.vision.transfer import (
    MIN_INPUT,
    TransferConfig,
    accuracy,
    adapt,
    build_model,
    head,
    layer_groups,
    prepare,
    render_printed_digits,
    run_epochs,
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


@pytest.mark.parametrize("arch", ["vgg11_bn", "efficientnet_b0"])
def test_arch_needs_its_input_size(arch: str) -> None:
    with pytest.raises(InputError, match=f"{arch} needs input_size >= 32"):
        TransferConfig.from_dict({"arch": arch, "input_size": 16})
    recipe = get_recipe("vision.transfer")   # --quick asks for each arch's smallest size
    assert recipe.make_config(True, 0, {"arch": arch}).input_size == MIN_INPUT[arch] == 32
    assert recipe.make_config(True, 0, {}).input_size == 16


@pytest.mark.parametrize("arch", [
    "resnet18",
    pytest.param("vgg11_bn", marks=pytest.mark.slow),
    pytest.param("efficientnet_b0", marks=pytest.mark.slow),
])
def test_each_arch_learns_on_a_tiny_budget(arch: str) -> None:
    """Pre-training on printed digits at the arch's smallest input for a few dozen steps
    lifts held-out accuracy well above chance (0.1); with torchvision's EfficientNet init and
    BatchNorm's running statistics it stayed at 0.1."""
    seed_everything(0, threads=1)   # torch's default 2 threads stall on a shared 2-core machine
    cfg = TransferConfig.from_dict({"arch": arch, "input_size": None})
    x, y = render_printed_digits(2000, seed=0)
    x = prepare(x, cfg.size)
    model = build_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses = run_epochs(model, x[200:], y[200:], 1, 32, optimizer)
    assert sum(losses[-5:]) < sum(losses[:5])
    assert accuracy(model, x[:200], y[:200]) > 0.3


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
    assert result.metrics["acc_finetune"] >= 0.7 and result.metrics["source_val_accuracy"] > 0.7
    assert "figures/transfer_comparison.png" in result.artifacts
    model = load_model(tmp_path / "q")
    assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 10)
