"""Run one recipe under the contract: validate, seed, track, train, judge, record."""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from aiforge.core.checkpoint import latest_checkpoint, load_checkpoint
from aiforge.core.config import RecipeConfig
from aiforge.core.context import RunContext
from aiforge.core.errors import InputError
from aiforge.core.fileio import atomic_write_json
from aiforge.core.registry import Recipe, get_recipe
from aiforge.core.result import Result
from aiforge.core.seeding import seed_everything
from aiforge.core.tracking import FINAL, MlflowTracker, NullTracker, Tracker

RUN_META = "run.json"


def default_out(recipe: str, seed: int) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return Path("runs") / recipe / f"{stamp}-seed{seed}"


def _prepare_resume(resume: Path) -> tuple[Path, dict[str, Any]]:
    """Check a run folder (or one of its checkpoints) before anything is written."""
    if (resume / "manifest.json").is_file():
        load_checkpoint(resume)  # an explicit checkpoint must itself be sound
        run_dir = resume.parent.parent
    else:
        run_dir = resume
        if not run_dir.is_dir():
            raise InputError(f"--resume: no such run folder: {run_dir}")
        if latest_checkpoint(run_dir / "checkpoints") is None:
            raise InputError(f"--resume: {run_dir} has no checkpoint to resume from")
    meta_path = run_dir / RUN_META
    if not meta_path.is_file():
        raise InputError(f"--resume: {run_dir} is not an aiforge run ({RUN_META} missing)")
    return run_dir, json.loads(meta_path.read_text())


def _keep_only_up_to(checkpoint: Path) -> None:
    """Resuming from an older checkpoint: set newer (damaged) ones aside, not delete them."""
    for newer in sorted(checkpoint.parent.iterdir()):
        if newer.is_dir() and newer.name.startswith("step-") and newer.name > checkpoint.name:
            newer.rename(newer.with_name(f".set-aside-{newer.name}"))


def run_recipe(
    name: str,
    *,
    quick: bool = False,
    seed: int = 0,
    out: Path | None = None,
    overrides: dict[str, Any] | None = None,
    resume: Path | None = None,
    quiet: bool = False,
    track: bool = True,
) -> Result:
    """Run recipe `name` and write `out/result.json`. Bad input raises `InputError` before
    anything is written."""
    recipe = get_recipe(name)
    overrides = overrides or {}
    if resume is not None:
        if overrides:
            raise InputError("--resume continues a run with its saved config; drop --set")
        run_dir, meta = _prepare_resume(resume)
        if meta["recipe"] != recipe.name:
            raise InputError(f"--resume: {run_dir} is a run of {meta['recipe']!r}, not {recipe.name!r}")
        quick, seed = bool(meta["quick"]), int(meta["seed"])
        cfg = recipe.config.from_dict(meta["config"])
        if (resume / "manifest.json").is_file():
            _keep_only_up_to(resume)
        out = run_dir
    else:
        cfg = recipe.make_config(quick, seed, overrides)
        out = out or default_out(recipe.name, seed)
        if out.exists() and any(out.iterdir()):
            raise InputError(f"--out {out} exists and is not empty; pick a new folder or use --resume")
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / RUN_META, {"recipe": recipe.name, "quick": quick, "seed": seed,
                                           "config": cfg.model_dump(mode="json")})
        try:
            return _execute(recipe, cfg, out, quick=quick, quiet=quiet, resume=False, track=track)
        except InputError:
            # Some input can only be checked when the recipe reads it (a data file named in the
            # config); a run refused then leaves nothing behind, as one refused earlier does.
            _remove_new_run(out, created)
            raise
    return _execute(recipe, cfg, out, quick=quick, quiet=quiet, resume=True, track=track)


def _remove_new_run(out: Path, created: bool) -> None:
    """Undo a new run's folder: delete it if this run made it, else empty it (it was empty)."""
    if created:
        shutil.rmtree(out, ignore_errors=True)
        return
    for child in out.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()


def _execute(recipe: Recipe, cfg: RecipeConfig, out: Path, *, quick: bool, quiet: bool,
             resume: bool, track: bool) -> Result:
    cfg.save(out / "config.json")
    seed_everything(cfg.seed, cfg.threads)
    tags = {"recipe": recipe.name, "quick": str(quick).lower(), "step": recipe.step, "out": str(out)}
    tracker: Tracker = MlflowTracker(f"{recipe.name}-s{cfg.seed}", tags) if track else NullTracker()
    tracker.log_params(cfg.model_dump())
    ctx = RunContext(recipe=recipe.name, out=out, config=cfg, quick=quick, quiet=quiet,
                     resume=resume, tracker=tracker)
    started = time.perf_counter()
    try:
        metrics = recipe.train(cfg, ctx)
    except BaseException:
        tracker.end("FAILED")
        raise
    bar = recipe.bar_for(quick)
    seconds = round(time.perf_counter() - started, 3)
    # A full bar is a result within a CPU budget: a run that took longer has not met it.
    # Quick settings only aim at their ~20 s.
    in_time = quick or seconds <= recipe.budget_s
    result = Result(
        recipe=recipe.name, quick=quick, seed=cfg.seed, seconds=seconds,
        metrics={k: float(v) for k, v in metrics.items()}, bar=bar.as_dict(),
        passed=bar.passed(metrics) and in_time, artifacts=sorted(ctx.artifacts),
    )
    result.save(out)
    tracker.log_metrics({f"{FINAL}{k}": v for k, v in result.metrics.items()})
    tracker.set_tags({"passed": str(result.passed).lower()})
    for rel in [*ctx.artifacts, "result.json", "config.json"]:
        path = out / rel
        # a folder keeps its own name in the run's artifacts; a file goes beside its siblings
        tracker.log_artifact(path, rel if path.is_dir() else _parent(rel))
    tracker.end("FINISHED")
    return result


def _parent(rel: str) -> str | None:
    parent = str(Path(rel).parent)
    return None if parent == "." else parent
