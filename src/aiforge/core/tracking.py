"""Experiment tracking on MLflow.

By default runs go to an embedded SQLite store under `runs/` (no server needed);
`MLFLOW_TRACKING_URI` points them anywhere else MLflow can reach. mlflow is imported only
when a run is tracked: `aiforge list` stays fast.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Protocol

DEFAULT_STORE = Path("runs")
EXPERIMENT = "aiforge"
FINAL = "final/"  # prefix of a run's result metrics, apart from its per-epoch curves


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_STORE.resolve()}/mlflow.db"


class Tracker(Protocol):
    run_id: str | None

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def end(self, status: str = "FINISHED") -> None: ...


class NullTracker:
    """Tracks nothing (`--no-track`)."""

    run_id: str | None = None

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def end(self, status: str = "FINISHED") -> None:
        pass


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _experiment_id(client: Any, uri: str) -> str:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = None
    if uri.startswith("sqlite:///"):
        # Keep artifacts beside the database rather than in ./mlruns of whatever folder
        # the command happened to run in.
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return str(client.create_experiment(EXPERIMENT, artifact_location=location))


class MlflowTracker:
    """One MLflow run, driven through the client API (no global active run)."""

    def __init__(self, run_name: str, tags: dict[str, str], uri: str | None = None) -> None:
        self.uri = uri or tracking_uri()
        self.client = _client(self.uri)
        run = self.client.create_run(_experiment_id(self.client, self.uri), run_name=run_name, tags=tags)
        self.run_id: str | None = run.info.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(k, float(v), now, step or 0) for k, v in metrics.items()])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


def recent_runs(limit: int = 20, uri: str | None = None) -> list[dict[str, Any]]:
    """The newest tracked runs: recipe, start time, passed flag and metrics."""
    uri = uri or tracking_uri()
    client = _client(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"],
                              max_results=limit)
    return [
        {
            "run_id": run.info.run_id,
            "recipe": run.data.tags.get("recipe", "?"),
            "quick": run.data.tags.get("quick", "?"),
            "start_time": run.info.start_time,
            "status": run.info.status,
            "passed": run.data.tags.get("passed", "?"),
            "metrics": {k.removeprefix(FINAL): v for k, v in run.data.metrics.items()
                        if k.startswith(FINAL)},
        }
        for run in runs
    ]


def register_model(run_id: str, name: str, alias: str | None = None, uri: str | None = None) -> int:
    """Register the run's `model/` artifact as a new version of `name`; optionally alias it."""
    client = _client(uri or tracking_uri())
    from mlflow.exceptions import MlflowException

    with contextlib.suppress(MlflowException):  # already registered: add a version
        client.create_registered_model(name)
    source = f"{client.get_run(run_id).info.artifact_uri}/model"
    version = client.create_model_version(name, source=source, run_id=run_id)
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return int(version.version)


def download_model_dir(model_uri: str, dest: Path, uri: str | None = None) -> Path:
    """Fetch a `runs:/RUN_ID/model` or `models:/NAME@alias` artifact folder to `dest`."""
    import mlflow

    uri = uri or tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dest)))
