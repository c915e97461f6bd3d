"""The `aiforge` command. It only parses arguments and prints; the work is in importable
functions (`run_recipe`, `run_many`, `load_model`, ...) that tests call directly.

Bad input (an unknown recipe, a bad --set, a missing path, a corrupt checkpoint) prints one
line on stderr and exits with code 2, having written nothing.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from aiforge.core.errors import InputError

app = typer.Typer(
    help="aiforge: the advanced AI-engineering roadmap, every topic a recipe that trains to a "
    "measured result on a CPU. Start with `aiforge list`, then `aiforge run NAME --quick`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()

Quick = Annotated[bool, typer.Option("--quick", help="Use the quick setting (about 20 s) and its quick bar.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
NoTrack = Annotated[bool, typer.Option("--no-track", help="Do not log to MLflow.")]


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.command("list")
def list_recipes(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every registered recipe: roadmap step, topic, the bar it must reach (full and quick)
    and its CPU budget."""
    from aiforge.core import all_recipes

    recipes = all_recipes()
    if as_json:
        typer.echo(json.dumps([
            {"name": r.name, "step": r.step, "topic": r.topic, "summary": r.summary,
             "bar": r.bar.as_dict(), "quick_bar": r.quick_bar.as_dict(), "budget_s": r.budget_s}
            for r in recipes], indent=2))
        return
    table = Table(title="aiforge recipes")
    for column in ("recipe", "step", "topic", "bar (full)", "bar (quick)", "budget"):
        table.add_column(column)
    for r in recipes:
        table.add_row(r.name, r.step, r.topic, str(r.bar), str(r.quick_bar), f"{r.budget_s:g} s")
    console.print(table)


@app.command()
def show(name: Annotated[str, typer.Argument(help="Recipe name, as `aiforge list` shows it.")]) -> None:
    """A recipe's config fields: type, default and what each does (set them with --set)."""
    from aiforge.core import get_recipe

    try:
        recipe = get_recipe(name)
    except InputError as err:
        fail(str(err))
    console.print(f"[bold]{recipe.name}[/] (step {recipe.step}, {recipe.topic}): {recipe.summary}")
    console.print(f"bar: {recipe.bar} within {recipe.budget_s:g} s; quick bar: {recipe.quick_bar}; "
                  f"quick setting: {recipe.quick or 'defaults'}")
    table = Table()
    for column in ("field", "type", "default", "doc"):
        table.add_column(column)
    for row in recipe.config.field_docs():
        table.add_row(*row)
    console.print(table)


@app.command()
def run(
    name: Annotated[str, typer.Argument(help="Recipe name, as `aiforge list` shows it.")],
    quick: Quick = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Run folder (new or empty); default runs/NAME/TIME-seedN.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config field: key=value (repeatable).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue a stopped run from its newest checkpoint (a run folder or a checkpoint folder). A finished run is left as it is; with --set LENGTH_FIELD=N (e.g. epochs) it is extended.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when the bar is missed.")] = False,
    quiet: Quiet = False,
    no_track: NoTrack = False,
) -> None:
    """Run one recipe and write OUT/result.json (recipe, quick, seed, seconds, metrics, bar,
    passed, artifacts)."""
    from aiforge.core import run_recipe
    from aiforge.core.config import parse_overrides
    from aiforge.core.runner import default_out

    if resume is None:
        out = out or default_out(name, seed)
    try:
        result = run_recipe(name, quick=quick, seed=seed, out=out, overrides=parse_overrides(set_ or []),
                            resume=resume, quiet=quiet, track=not no_track)
    except InputError as err:
        fail(str(err))
    from aiforge.core import get_recipe

    bar = result.bar
    budget = get_recipe(result.recipe).budget_s
    verdict = "[green]passed[/]" if result.passed else "[red]missed[/]"
    if not result.passed and not result.quick and result.seconds > budget:
        verdict += f" (over its {budget:g} s budget)"
    conditions = [bar, *bar.get("also", [])]
    measured = ", ".join(f"{c['metric']} = {result.metrics.get(c['metric'], float('nan')):.4g} "
                         f"(bar {c['op']} {c['value']:g})" for c in conditions)
    console.print(f"{result.recipe}: {measured} {verdict} in {result.seconds:.1f} s")
    console.print(json.dumps(result.metrics, indent=None), highlight=False, soft_wrap=True)
    if resume is None:
        run_dir = out
    else:
        run_dir = resume.parent.parent if (resume / "manifest.json").is_file() else resume
    console.print(f"result: {run_dir}/result.json", highlight=False, soft_wrap=True)
    if strict and not result.passed:
        raise typer.Exit(1)


def _stamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


@app.command()
def predict(
    recipe: Annotated[str, typer.Argument(help="A detector (vision.detect-yolo, vision.detect-frcnn, "
                                          "vision.segment-maskrcnn) or a text recipe (sequence.finetune, "
                                          "sequence.bert, sequence.seq2seq, sequence.t5).")],
    run_dir: Annotated[Path, typer.Option("--run", help="Run folder of the trained model.")],
    image: Annotated[Path | None, typer.Option("--image", help="Image file, for a detector.")] = None,
    text: Annotated[str | None, typer.Option("--text", help="Text to label or date to translate.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Where a detector writes the annotated image (PNG).")] = None,
    min_score: Annotated[float, typer.Option(min=0.0, max=1.0, help="Detections scoring at least this.")] = 0.3,
    beam: Annotated[int, typer.Option("--beam", help="Beam width of the translators; 1 is greedy.")] = 1,
) -> None:
    """One prediction from a trained run, as JSON: detections (and an annotated image) for an
    image, a label with probabilities or a translation for a text."""
    try:
        if recipe.startswith("sequence."):
            if text is None or image is not None:
                raise InputError(f"{recipe} reads --text, not --image")
            from aiforge.sequence.predict import predict_text

            result = predict_text(recipe, run_dir, text, beam)
        else:
            if image is None or text is not None:
                raise InputError(f"{recipe} reads --image, not --text")
            from aiforge.vision.predict import predict_image

            result = predict_image(recipe, run_dir, image, out, min_score)
    except InputError as err:
        fail(str(err))
    typer.echo(json.dumps(result, indent=2))


@app.command()
def bench(
    names: Annotated[list[str] | None, typer.Argument(help="Recipes to run; all when none is given.")] = None,
    quick: Quick = False,
    seeds: Annotated[int, typer.Option(min=1, max=20, help="Seeds per recipe (FIRST..FIRST+N-1): the table shows each seed and mean ± std.")] = 1,
    first_seed: Annotated[int, typer.Option("--first-seed", min=0, help="The first seed (report on seeds that chose nothing).")] = 0,
    out: Annotated[Path | None, typer.Option(help="Folder for bench.md and bench.json; default runs/bench/TIME.")] = None,
    quiet: Quiet = True,
    no_track: NoTrack = False,
) -> None:
    """Run several recipes (several seeds each), print the table and write it as Markdown
    and JSON. Every seed's figure is shown and every seed that missed its bar is listed; a
    deterministic recipe runs once. Exits 1 if a recipe failed to run."""
    from aiforge.roadmap import bench_summary, markdown_table, run_many

    out = out or Path("runs") / "bench" / _stamp()
    try:
        rows = run_many(names, quick, list(range(first_seed, first_seed + seeds)), out, quiet=quiet,
                        track=not no_track)
    except InputError as err:
        fail(str(err))
    md, js = bench_summary(rows, out)
    typer.echo(markdown_table(rows))
    for miss in (m for r in rows for m in r.misses()):
        console.print(f"[bold red]MISSED[/] {miss.replace('`', '')}", highlight=False, soft_wrap=True)
    typer.echo(f"wrote {md} and {js}")
    if not all(r.ran for r in rows):
        raise typer.Exit(1)


@app.command()
def roadmap(
    quick: Quick = False,
    out: Annotated[Path | None, typer.Option(help="Report folder; default runs/roadmap/TIME.")] = None,
    quiet: Quiet = True,
    no_track: NoTrack = False,
) -> None:
    """The main job: run every recipe, go on past failures, and write report.html and
    report.md. Exits 0 when every recipe ran (a missed bar is reported, not fatal)."""
    from aiforge.roadmap import run_many, write_report

    out = out or Path("runs") / "roadmap" / f"{_stamp()}{'-quick' if quick else ''}"
    try:
        rows = run_many(None, quick, [0], out, quiet=quiet, track=not no_track)
    except InputError as err:
        fail(str(err))
    md, page = write_report(rows, out, quick)
    failed = [r.recipe for r in rows if not r.ran]
    typer.echo(f"report: {page.resolve()}\n        {md.resolve()}")
    if failed:
        typer.echo(f"{len(failed)} recipe(s) failed to run: {', '.join(failed)}", err=True)
        raise typer.Exit(1)


@app.command()
def runs(
    limit: Annotated[int, typer.Option(min=1, help="How many runs to show.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Recent tracked runs from the tracking store (MLFLOW_TRACKING_URI or runs/mlflow.db)."""
    from aiforge.core.tracking import recent_runs, tracking_uri

    found = recent_runs(limit)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    table = Table(title=f"runs in {tracking_uri()}")
    for column in ("date", "recipe", "quick", "status", "passed", "key metrics", "run id"):
        table.add_column(column)
    for r in found:
        when = datetime.fromtimestamp(r["start_time"] / 1000).strftime("%Y-%m-%d %H:%M")
        key = ", ".join(f"{k}={v:.4g}" for k, v in sorted(r["metrics"].items())[:3])
        table.add_row(when, r["recipe"], r["quick"], r["status"], r["passed"], key, r["run_id"][:8])
    console.print(table)


@app.command()
def ui(port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 5000) -> None:
    """Start the MLflow UI on 127.0.0.1 over the same tracking store."""
    from aiforge.core.tracking import tracking_uri

    uri = tracking_uri()
    typer.echo(f"MLflow UI on http://127.0.0.1:{port} over {uri} (Ctrl-C stops it)")
    os.execvp(sys.executable, [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"])


def _add_area_commands() -> None:
    """Areas add their own commands (predict, play, sample, serve, ...) from
    `aiforge/<area>/commands.py`, which must import nothing heavy at module level."""
    from aiforge.recipes import AREAS

    for area in AREAS:
        try:
            module = importlib.import_module(f"aiforge.{area}.commands")
        except ModuleNotFoundError as err:
            if err.name != f"aiforge.{area}.commands":
                raise
            continue
        module.register_commands(app)


_add_area_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
