"""Run one recipe under the contract: validate, seed, track, train, judge, record.

A run may take several sittings (`--resume` after a crash or a kill, or to extend a finished
run with more epochs). Each sitting is a *segment* in `run.json`; the run's `seconds` is the
training time of all its segments together, so a budget is judged on the total and cannot be
met in pieces. A killed segment counts up to its last written file (the last checkpoint or
log): what it computed after that is lost and is done, and counted, again by the next.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from aiforge.core.checkpoint import latest_checkpoint, load_checkpoint
from aiforge.core.config import RecipeConfig
from aiforge.core.context import MODEL_DIR, RunContext
from aiforge.core.errors import InputError
from aiforge.core.fileio import atomic_write_json
from aiforge.core.model_files import record_model_files
from aiforge.core.registry import Recipe, get_recipe
from aiforge.core.result import Result
from aiforge.core.seeding import seed_everything
from aiforge.core.tracking import FINAL, MlflowTracker, NullTracker, Tracker

RUN_META = "run.json"


def default_out(recipe: str, seed: int) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return Path("runs") / recipe / f"{stamp}-seed{seed}"


class RunCompleteError(InputError):
    """`--resume` on a run that has already finished: nothing to resume, nothing changed."""


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


def _extension(recipe: Recipe, cfg: RecipeConfig, overrides: dict[str, Any], run_dir: Path,
               finished: bool) -> tuple[RecipeConfig, list[dict[str, Any]]]:
    """The longer config of an extended run, and what changed. Only the config's length
    fields may change, and only upwards; anything else is refused before a file is touched."""
    allowed = type(cfg).length_fields
    if not allowed:
        raise InputError(f"--resume with --set: {recipe.name} declares no length field, so a run "
                         "of it cannot be extended; --resume alone continues a stopped run")
    others = sorted(set(overrides) - set(allowed))
    if others:
        raise InputError(f"--resume continues a run with its saved config; only its length "
                         f"field(s) {', '.join(allowed)} may be raised with --set, not {others[0]!r}")
    longer = cfg.with_overrides(overrides)
    changes = []
    for key in overrides:
        before, after = getattr(cfg, key), getattr(longer, key)
        if after <= before:
            raise InputError(f"--set {key}={after}: extending a run means more training; "
                             f"{run_dir} already has {key}={before}")
        changes.append({"field": key, "from": before, "to": after})
    previous = _load_result(run_dir) if finished else None
    stamp = datetime.now().isoformat(timespec="seconds")
    return longer, [{**c, "at": stamp, "previous_metrics": previous} for c in changes]


def _load_result(run_dir: Path) -> dict[str, Any]:
    return dict(json.loads((run_dir / "result.json").read_text())["metrics"])


def _close_open_segments(run_dir: Path, segments: list[dict[str, Any]]) -> None:
    """A segment that never finished (killed) counts from its start to the last file it wrote."""
    for segment in segments:
        if segment["seconds"] is None:
            last = max((p.stat().st_mtime for p in run_dir.rglob("*")
                        if p.is_file() and p.name != RUN_META), default=segment["started"])
            segment["seconds"] = round(max(0.0, last - segment["started"]), 3)
            segment["ended"] = "killed"


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
    anything is written.

    With `resume`, continue the stopped run in that folder from its newest checkpoint (or
    from the checkpoint folder given). A finished run raises `RunCompleteError` and is left
    as it is, unless `overrides` raise its length fields (`{"epochs": 40}`): then it is
    extended from its last checkpoint, and the extension is recorded in `run.json`."""
    recipe = get_recipe(name)
    overrides = overrides or {}
    if resume is None:
        cfg = recipe.make_config(quick, seed, overrides)
        out = out or default_out(recipe.name, seed)
        if out.exists() and any(out.iterdir()):
            raise InputError(f"--out {out} exists and is not empty; pick a new folder or use --resume")
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {"recipe": recipe.name, "quick": quick, "seed": seed,
                "config": cfg.model_dump(mode="json"), "segments": [], "extensions": []}
        try:
            return _execute(recipe, cfg, out, meta, quick=quick, quiet=quiet, resume=False, track=track)
        except InputError:
            # Some input can only be checked when the recipe reads it (a data file named in the
            # config); a run refused then leaves nothing behind, as one refused earlier does.
            _remove_new_run(out, created)
            raise

    run_dir, meta = _prepare_resume(resume)
    if meta["recipe"] != recipe.name:
        raise InputError(f"--resume: {run_dir} is a run of {meta['recipe']!r}, not {recipe.name!r}")
    quick = bool(meta["quick"])
    cfg = recipe.config.from_dict(meta["config"])
    finished = (run_dir / "result.json").is_file()
    if finished and not overrides:
        fields = type(cfg).length_fields
        how = (f"; to train it longer, extend it: --resume {run_dir} --set {fields[0]}=N"
               if fields else "")
        raise RunCompleteError(f"run {run_dir} is complete; "
                               f"nothing to resume, nothing changed{how}")
    extensions: list[dict[str, Any]] = []
    if overrides:
        cfg, extensions = _extension(recipe, cfg, overrides, run_dir, finished)
    if (resume / "manifest.json").is_file():
        _keep_only_up_to(resume)
    meta.setdefault("segments", [])
    meta["extensions"] = [*meta.get("extensions", []), *extensions]
    meta["config"] = cfg.model_dump(mode="json")
    _close_open_segments(run_dir, meta["segments"])
    return _execute(recipe, cfg, run_dir, meta, quick=quick, quiet=quiet, resume=True, track=track)


def _remove_new_run(out: Path, created: bool) -> None:
    """Undo a new run's folder: delete it if this run made it, else empty it (it was empty)."""
    if created:
        shutil.rmtree(out, ignore_errors=True)
        return
    for child in out.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()


def _execute(recipe: Recipe, cfg: RecipeConfig, out: Path, meta: dict[str, Any], *, quick: bool,
             quiet: bool, resume: bool, track: bool) -> Result:
    segment: dict[str, Any] = {"kind": "resume" if resume else "start", "started": time.time(),
                               "seconds": None}
    meta["segments"].append(segment)
    atomic_write_json(out / RUN_META, meta)
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
    if (out / MODEL_DIR).is_dir():
        record_model_files(out / MODEL_DIR)
    segment["seconds"] = round(time.perf_counter() - started, 3)
    segment["ended"] = "finished"
    atomic_write_json(out / RUN_META, meta)
    bar = recipe.bar_for(quick)
    segments = [float(s["seconds"]) for s in meta["segments"]]
    seconds = round(sum(segments), 3)
    # A full bar is a result within a CPU budget: a run that took longer, in one sitting or
    # in several, has not met it. Quick settings only aim at their ~20 s.
    in_time = quick or seconds <= recipe.budget_s
    result = Result(
        recipe=recipe.name, quick=quick, seed=cfg.seed, seconds=seconds,
        metrics={k: float(v) for k, v in metrics.items()}, bar=bar.as_dict(),
        passed=bar.passed(metrics) and in_time, artifacts=sorted(ctx.artifacts),
        segments=segments,
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
