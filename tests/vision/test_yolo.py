"""The YOLO-style detector: overlap measures and NMS against torchvision.ops, target
assignment, learning on tiny data, the quick bar, determinism, save/load and ONNX parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import (
    batched_nms,
    box_iou,
    complete_box_iou_loss,
    generalized_box_iou_loss,
    nms,
)

from aiforge.core import load_model, run_recipe
from aiforge.data.shapes import image_tensor, make_shapes, padded_targets
from aiforge.vision.yolo import (
    STRIDE,
    YoloNet,
    assign_targets,
    box_iou_terms,
    complete_iou,
    dense_predictions,
    detect,
    generalized_iou,
    postprocess,
    random_flips,
    yolo_loss,
)


def random_boxes(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 50
    return torch.cat([xy, xy + 1 + torch.rand(n, 2, generator=g) * 30], dim=1)


def test_overlaps_match_torchvision() -> None:
    a, b = random_boxes(300, 0), random_boxes(300, 1)   # many pairs do not overlap at all
    iou, _ = box_iou_terms(a, b)
    torch.testing.assert_close(iou, box_iou(a, b).diagonal(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(1 - generalized_iou(a, b), generalized_box_iou_loss(a, b), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(1 - complete_iou(a, b), complete_box_iou_loss(a, b), atol=1e-5, rtol=1e-5)
    assert (generalized_iou(a, b) < 0).any(), "disjoint boxes give negative GIoU"


def test_postprocess_is_classwise_nms() -> None:
    boxes = random_boxes(200, 2)[None]                      # (1, N, 4)
    scores = torch.rand(1, 200, 4, generator=torch.Generator().manual_seed(3))
    (det,) = postprocess(boxes, scores, conf=0.5, iou=0.45, max_det=1000)
    slot, cls = (scores[0] > 0.5).nonzero(as_tuple=True)
    expected = set()
    for c in range(4):   # reference: plain NMS one class at a time
        idx = (cls == c).nonzero().flatten()
        kept = nms(boxes[0][slot[idx]], scores[0][slot[idx], c], 0.45)
        expected |= {(int(slot[idx][k]), c) for k in kept}
    got = set()
    for box, label in zip(det.boxes, det.labels, strict=True):
        matches = (boxes[0] == box).all(1).nonzero().flatten()
        got.add((int(matches[0]), int(label)))
    assert got == expected
    assert (det.scores[:-1] >= det.scores[1:]).all(), "sorted by score"
    assert len(batched_nms(boxes[0][slot], scores[0][slot, cls], cls, 0.45)) == len(det.labels)


def test_assignment_uses_centre_cell_and_best_anchor() -> None:
    model = YoloNet()
    boxes = torch.tensor([[[10.0, 20.0, 30.0, 36.0], [0, 0, 0, 0]]])  # centre (20, 28), 20 x 16
    labels = torch.tensor([[2, -1]])
    (img, anchor, gy, gx), t_box, t_cls = assign_targets(boxes, labels, model.anchors, 16)
    assert set(gx.tolist()) == {20 // STRIDE} and set(gy.tolist()) == {28 // STRIDE}
    assert 1 in anchor.tolist(), "the 17-pixel anchor fits a 20x16 box best"
    assert (t_cls == 2).all() and (img == 0).all() and torch.equal(t_box[0], boxes[0, 0])


def test_flips_keep_boxes_on_their_objects() -> None:
    samples = make_shapes(6, seed=1)
    x = image_tensor(samples)
    boxes, _ = padded_targets(samples, 6)
    torch.manual_seed(0)
    fx, fb = random_flips(x, boxes)
    for i, s in enumerate(samples):   # the pixels inside each flipped box are the object's
        for k in range(len(s.labels)):
            x1, y1, x2, y2 = fb[i, k].int().tolist()
            assert (x2 - x1, y2 - y1) == tuple((boxes[i, k, 2:] - boxes[i, k, :2]).int().tolist())
            crop = fx[i, :, y1:y2, x1:x2]
            assert crop.shape[1:] == (y2 - y1, x2 - x1)
    assert not torch.equal(fx, x)


def test_loss_falls_on_tiny_data() -> None:
    torch.manual_seed(0)
    samples = make_shapes(8, seed=2)
    x = image_tensor(samples)
    boxes, labels = padded_targets(samples, 6)
    model = YoloNet(width=16)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = yolo_loss(model, model(x), boxes, labels, "ciou", (2.0, 1.0, 1.0))
        opt.zero_grad()
        loss["total"].backward()
        opt.step()
        losses.append({k: float(v) for k, v in loss.items()})
    assert losses[-1]["total"] < 0.6 * losses[0]["total"]
    assert losses[-1]["box"] < losses[0]["box"] and losses[-1]["cls"] < losses[0]["cls"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("yolo") / "run"
    result = run_recipe("vision.detect-yolo", quick=True, out=out, track=False, quiet=True)
    assert result.passed, result.metrics
    return out


def test_quick_bar_and_artifacts(quick_run: Path) -> None:
    import json

    result = json.loads((quick_run / "result.json").read_text())
    assert result["passed"] and result["metrics"]["test_map50"] >= 0.30
    for name in ("figures/test_predictions.png", "figures/loss_components.png", "model"):
        assert name in result["artifacts"]


def test_untrained_model_misses_quick_bar() -> None:
    from aiforge.data.shapes import make_shapes as gen
    from aiforge.vision.detection import mean_average_precision

    torch.manual_seed(0)
    samples = gen(100, seed=3000)
    dets = detect(YoloNet(), image_tensor(samples))
    assert mean_average_precision(samples, dets)["map50"] < 0.05


def test_save_load_round_trip(quick_run: Path) -> None:
    model = load_model(quick_run)
    x = image_tensor(make_shapes(4, seed=9))
    again = load_model(quick_run)
    with torch.no_grad():
        torch.testing.assert_close(model(x), again(x))
    assert isinstance(model, YoloNet) and not model.training


def test_onnx_parity(quick_run: Path, tmp_path: Path) -> None:
    from aiforge.vision.onnx_export import export_yolo_onnx, onnx_dense, onnx_detect

    path = export_yolo_onnx(quick_run, tmp_path / "yolo.onnx")
    model = load_model(quick_run)
    x = image_tensor(make_shapes(5, seed=11))
    boxes, scores = onnx_dense(path, x.numpy())
    with torch.no_grad():
        ref_boxes, ref_scores = dense_predictions(model, model(x))  # type: ignore[arg-type]
    np.testing.assert_allclose(boxes, ref_boxes.numpy(), atol=1e-3)
    np.testing.assert_allclose(scores, ref_scores.numpy(), atol=1e-5)
    for ours, ref in zip(onnx_detect(path, x.numpy(), conf=0.3), detect(model, x, conf=0.3), strict=True):  # type: ignore[arg-type]
        assert torch.equal(ours.labels, ref.labels)
        torch.testing.assert_close(ours.boxes, ref.boxes, atol=1e-3, rtol=0)


def test_same_seed_same_numbers(tmp_path: Path) -> None:
    small = {"epochs": 1, "n_train": 48, "n_val": 8, "n_test": 8}
    a = run_recipe("vision.detect-yolo", overrides=small, out=tmp_path / "a", track=False, quiet=True)
    b = run_recipe("vision.detect-yolo", overrides=small, out=tmp_path / "b", track=False, quiet=True)
    for key in ("test_map50", "test_map", "val_map50"):
        assert a.metrics[key] == b.metrics[key]
