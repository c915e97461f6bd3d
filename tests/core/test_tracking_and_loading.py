"""Runs are tracked in MLflow, and any run's model is rebuilt from the run alone."""

import json

import pytest
import torch

from aiforge.core import InputError, load_model, run_recipe
from aiforge.core.tracking import recent_runs, register_model
from aiforge.data.digits import digits_splits


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tracked") / "run"
    result = run_recipe("vision.cnn-digits", quick=True, seed=1, out=out, quiet=True,
                        overrides={"epochs": "2"})
    return out, result


def test_the_run_is_in_the_tracking_store_with_params_metrics_and_artifacts(tracked_run):
    _out, result = tracked_run
    runs = recent_runs(10)
    mine = next(r for r in runs if r["recipe"] == "vision.cnn-digits" and r["quick"] == "true")
    assert mine["status"] == "FINISHED" and mine["passed"] == str(result.passed).lower()
    assert mine["metrics"]["test_accuracy"] == pytest.approx(result.metrics["test_accuracy"])

    from mlflow.tracking import MlflowClient
    client = MlflowClient()
    run = client.get_run(mine["run_id"])
    assert run.data.params["epochs"] == "2" and run.data.params["seed"] == "1"
    history = client.get_metric_history(mine["run_id"], "val_accuracy")
    assert [m.step for m in history] == [1, 2]
    logged = {a.path for a in client.list_artifacts(mine["run_id"])}
    assert {"result.json", "config.json", "model", "figures"} <= logged


def _predictions(model):
    return model(digits_splits()["test"].x).argmax(1)


def test_model_rebuilt_from_the_run_folder_predicts_the_same(tracked_run):
    out, result = tracked_run
    model = load_model(out)
    accuracy = float((_predictions(model) == digits_splits()["test"].y).float().mean())
    assert accuracy == pytest.approx(result.metrics["test_accuracy"])


def test_model_rebuilt_from_runs_and_models_uris(tracked_run):
    out, _ = tracked_run
    run_id = next(r["run_id"] for r in recent_runs(10) if r["recipe"] == "vision.cnn-digits")
    local = _predictions(load_model(out))
    assert torch.equal(_predictions(load_model(f"runs:/{run_id}/model")), local)
    register_model(run_id, "digits-cnn", alias="champion")
    assert torch.equal(_predictions(load_model("models:/digits-cnn@champion")), local)
    assert torch.equal(_predictions(load_model("models:/digits-cnn/1")), local)


def test_saved_model_holds_no_pickle(tracked_run):
    out, _ = tracked_run
    files = sorted(p.name for p in (out / "model").iterdir())
    assert files == ["aiforge-model.json", "files.sha256.json", "model.safetensors"]
    meta = json.loads((out / "model" / "aiforge-model.json").read_text())
    assert meta["recipe"] == "vision.cnn-digits" and meta["config"]["epochs"] == 2


def test_loading_bad_sources_gives_clear_errors(tmp_path):
    with pytest.raises(InputError, match="no such run or model folder"):
        load_model(tmp_path / "missing")
    with pytest.raises(InputError, match="holds no saved model"):
        load_model(tmp_path)
    with pytest.raises(InputError, match="cannot fetch models:/nobody@champion"):
        load_model("models:/nobody@champion")
