"""Faster R-CNN and Mask R-CNN: quick bar, learning, weights=PATH, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

from aiforge.core import InputError, load_model, run_recipe
from aiforge.data.shapes import make_shapes
from aiforge.vision.two_stage import TwoStageConfig, build_two_stage, detect, loader, training_loss


@pytest.fixture(scope="module")
def frcnn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("frcnn") / "run"
    result = run_recipe("vision.detect-frcnn", quick=True, out=out, track=False, quiet=True)
    assert result.passed, result.metrics
    return out


def test_frcnn_quick_bar(frcnn_run: Path) -> None:
    result = json.loads((frcnn_run / "result.json").read_text())
    assert result["metrics"]["train_loss_ratio"] <= 0.6
    assert "figures/test_predictions.png" in result["artifacts"]


def test_frcnn_save_load(frcnn_run: Path) -> None:
    samples = make_shapes(3, seed=4)
    a, b = detect(load_model(frcnn_run), samples), detect(load_model(frcnn_run), samples)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x.boxes, y.boxes)


def test_mask_rcnn_learns_on_tiny_data() -> None:
    torch.manual_seed(0)
    cfg = TwoStageConfig(input_size=64, batch_size=4, lr=4e-3, flip=False)
    model = build_two_stage(cfg, with_masks=True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    curves: dict[str, list[float]] = {}
    loss_fn = training_loss(cfg, curves)
    model.train()
    batch = next(iter(loader(make_shapes(4, seed=6), True, 4)))
    for _ in range(12):
        loss = loss_fn(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert {"classifier", "box_reg", "mask", "objectness", "rpn_box_reg"} <= set(curves)
    assert curves["total"][-1] < 0.7 * curves["total"][0]
    assert curves["mask"][-1] < curves["mask"][0]
    model.eval()
    (det,) = detect(model, make_shapes(1, seed=6))
    assert det.masks is not None and det.masks.shape[1:] == (64, 64)


def test_weights_file_loads_into_backbone(tmp_path: Path) -> None:
    torch.manual_seed(1)
    reference = resnet18(weights=None)   # the same format as torchvision's ImageNet files
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = build_two_stage(TwoStageConfig(weights=str(path)), with_masks=False)
    body = model.backbone.body
    torch.testing.assert_close(body.conv1.weight, reference.conv1.weight)
    torch.testing.assert_close(body.layer3[1].bn2.running_var, reference.layer3[1].bn2.running_var)
    with pytest.raises(InputError, match="not found"):   # checked with the config, before a run
        TwoStageConfig.from_dict({"weights": str(tmp_path / "nope.pth")})
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    with pytest.raises(InputError, match="cannot read"):
        build_two_stage(TwoStageConfig(weights=str(tmp_path / "junk.pth")), with_masks=False)


@pytest.mark.slow
def test_mask_rcnn_quick_bar(tmp_path: Path) -> None:
    result = run_recipe("vision.segment-maskrcnn", quick=True, out=tmp_path / "m", track=False, quiet=True)
    assert result.passed, result.metrics
