"""The shared training loop on a problem small enough to train in a second."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from aiforge.core import ConfigError, RunContext, SupervisedConfig, fit, seed_everything


def _problem(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return x, y


def _fit(tmp_path: Path, resume: bool = False, **overrides):
    seed_everything(0)
    # These tests pin CPU numerics; the CUDA path has its own test below.
    cfg = SupervisedConfig.from_dict({"epochs": 5, "lr": 0.05, "batch_size": 32, "device": "cpu", **overrides})
    x, y = _problem()
    loader = DataLoader(TensorDataset(x, y), batch_size=cfg.batch_size, shuffle=True)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    ctx = RunContext(recipe="test", out=tmp_path, config=cfg, quiet=True, resume=resume)

    def loss_fn(m, batch):
        return F.cross_entropy(m(batch[0]), batch[1])

    def evaluate(m):
        return {"acc": float((m(x).argmax(1) == y).float().mean()), "loss": float(F.cross_entropy(m(x), y))}

    return fit(model, loader, loss_fn=loss_fn, evaluate=evaluate, cfg=cfg, ctx=ctx,
               optimizer=optimizer, monitor="acc"), model


def test_loss_falls_and_accuracy_rises(tmp_path):
    result, _ = _fit(tmp_path)
    assert result.history[-1]["train_loss"] < 0.5 * result.history[0]["train_loss"]
    assert result.best_value > 0.9


def test_one_checkpoint_per_epoch_with_the_resolved_config(tmp_path):
    _fit(tmp_path, epochs=3)
    from aiforge.core import latest_checkpoint
    ckpt = latest_checkpoint(tmp_path / "checkpoints")
    assert ckpt.step == 3 and ckpt.config["epochs"] == 3 and len(ckpt.state["history"]) == 3


def test_the_model_ends_with_its_best_weights(tmp_path):
    result, model = _fit(tmp_path)
    x, y = _problem()
    acc = float((model(x).argmax(1) == y).float().mean())
    assert acc == pytest.approx(result.best_value)


def test_early_stopping_stops_after_patience_epochs_without_gain(tmp_path):
    # lr so small that accuracy cannot improve on its first value for long
    result, _ = _fit(tmp_path, epochs=30, lr=1e-7, patience=2, schedule="constant")
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 2 < 30


def test_gradient_clipping_bounds_the_update(tmp_path):
    result, _ = _fit(tmp_path, epochs=1, grad_clip=1e-6, lr=1.0, schedule="constant")
    free, _ = _fit(tmp_path / "free", epochs=1, lr=1.0, schedule="constant")
    assert result.history[0]["train_loss"] != free.history[0]["train_loss"]


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "constant"])
def test_schedules_step_every_batch(tmp_path, schedule):
    result, _ = _fit(tmp_path, epochs=2, schedule=schedule, warmup_fraction=0.0)
    final_lr = result.history[-1]["lr"]
    if schedule == "constant":
        assert final_lr == pytest.approx(0.05)
    else:
        assert final_lr < 0.01


def test_same_seed_same_numbers(tmp_path):
    a, _ = _fit(tmp_path / "a")
    b, _ = _fit(tmp_path / "b")
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]


def _numbers(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_resume_after_a_crash_continues_to_the_same_numbers(tmp_path, monkeypatch):
    full, full_model = _fit(tmp_path / "full", epochs=5)

    calls = {"n": 0}
    real_save = __import__("aiforge.core.train", fromlist=["save_checkpoint"]).save_checkpoint

    def save_then_die(directory, step, *args, **kwargs):
        real_save(directory, step, *args, **kwargs)
        calls["n"] += 1
        if step == 2:
            raise KeyboardInterrupt  # the run dies right after epoch 2's checkpoint

    monkeypatch.setattr("aiforge.core.train.save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "part", epochs=5)
    monkeypatch.undo()
    resumed, resumed_model = _fit(tmp_path / "part", resume=True, epochs=5)
    assert calls["n"] == 2
    assert _numbers(resumed.history) == _numbers(full.history)
    for a, b in zip(full_model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_amp_on_cpu_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="amp=true needs a CUDA device"):
        _fit(tmp_path, amp=True)


def test_checkpoint_every_skips_epochs_but_keeps_the_last(tmp_path):
    from aiforge.core.checkpoint import list_checkpoints
    _fit(tmp_path, epochs=5, checkpoint_every=2)
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step-000004", "step-000005"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_autocast_on_cuda_learns_and_leaves_fp32_weights(tmp_path):
    seed_everything(0)
    cfg = SupervisedConfig.from_dict({"epochs": 5, "lr": 0.05, "batch_size": 32, "device": "cuda", "amp": True})
    x, y = _problem()
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    ctx = RunContext(recipe="test", out=tmp_path, config=cfg, quiet=True)

    def evaluate(m):
        xd, yd = x.to("cuda"), y.to("cuda")
        return {"acc": float((m(xd).argmax(1) == yd).float().mean())}

    result = fit(model, DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True),
                 loss_fn=lambda m, b: F.cross_entropy(m(b[0]).float(), b[1]), evaluate=evaluate, cfg=cfg,
                 ctx=ctx, optimizer=torch.optim.AdamW(model.parameters(), lr=cfg.lr), monitor="acc")
    assert result.best_value > 0.9
    assert all(p.dtype == torch.float32 and p.is_cuda for p in model.parameters())
