import pytest
import torch
from torch import nn

from aiforge.core.checkpoint import (
    CheckpointError,
    join_tensors,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    split_tensors,
)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def _optimizer_state(model: nn.Module) -> dict:
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.8, 0.9))
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    return opt.state_dict()


def test_nested_state_round_trips_with_types():
    state = {"opt": {0: {"exp_avg": torch.ones(2)}, 1: {"step": torch.tensor(3.0)}},
             "betas": (0.9, 0.99), "history": [{"epoch": 1, "loss": 0.5}], "name": "x", "none": None}
    tensors: dict = {}
    plain = split_tensors(state, tensors)
    back = join_tensors(plain, tensors)
    assert set(back["opt"]) == {0, 1}
    assert back["betas"] == (0.9, 0.99)
    assert torch.equal(back["opt"][0]["exp_avg"], torch.ones(2))
    assert back["history"] == state["history"] and back["none"] is None


def test_objects_that_json_cannot_hold_are_refused():
    with pytest.raises(TypeError, match="cannot checkpoint"):
        split_tensors({"f": object()}, {})


def test_save_and_load_restore_weights_and_optimizer(tmp_path):
    model = _model()
    opt_state = _optimizer_state(model)
    save_checkpoint(tmp_path, 1, model, {"optimizer": opt_state, "epoch": 1}, {"lr": 0.1})
    ckpt = load_checkpoint(tmp_path / "step-000001")
    fresh = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    ckpt.load_weights(fresh)
    for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b)
    opt = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    opt.load_state_dict(ckpt.state["optimizer"])
    assert opt.param_groups[0]["betas"] == (0.8, 0.9)
    assert torch.equal(opt.state_dict()["state"][0]["exp_avg"], opt_state["state"][0]["exp_avg"])
    assert ckpt.config == {"lr": 0.1} and ckpt.step == 1


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    model = _model()
    for step in range(1, 5):
        save_checkpoint(tmp_path, step, model, {"epoch": step}, {}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000003", "step-000004"]


def test_a_crash_while_saving_leaves_the_previous_checkpoint_and_no_partial_one(tmp_path, monkeypatch):
    model = _model()
    save_checkpoint(tmp_path, 1, model, {"epoch": 1}, {})

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("aiforge.core.checkpoint.save_file", explode)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 2, model, {"epoch": 2}, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000001"]
    assert latest_checkpoint(tmp_path).state["epoch"] == 1


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_a_damaged_newest_checkpoint_is_reported_and_the_previous_stays_usable(tmp_path, damage):
    model = _model()
    save_checkpoint(tmp_path, 1, model, {"epoch": 1}, {})
    save_checkpoint(tmp_path, 2, model, {"epoch": 2}, {})
    weights = tmp_path / "step-000002" / "model.safetensors"
    data = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        weights.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    else:
        weights.unlink()
    with pytest.raises(CheckpointError, match=r"step-000002.*previous good checkpoint is .*step-000001"):
        latest_checkpoint(tmp_path)
    assert load_checkpoint(tmp_path / "step-000001").state["epoch"] == 1


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope")


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os

    from aiforge.core.fileio import atomic_write_text
    atomic_write_text(tmp_path / "report.md", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "report.md").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "report.md").read_text() == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]
