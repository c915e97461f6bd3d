"""The main job: run every registered recipe and write the roadmap report.

`run_many` runs recipes one after another in this process, goes on past a recipe that
fails (recording its error), and returns one row per recipe. `write_report` turns the rows
into `report.md` and a self-contained `report.html` (figures embedded) grouped by roadmap
step. `aiforge bench` uses the same rows, over several seeds: every seed's figure is shown,
and a seed that missed its bar is named in the table and again in a list of misses, so a
good mean never hides a bad seed. A deterministic recipe runs once, whatever the seeds.
"""

from __future__ import annotations

import base64
import html
import statistics
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aiforge.core import InputError, all_recipes, get_recipe, run_recipe
from aiforge.core.fileio import atomic_write_json, atomic_write_text
from aiforge.core.registry import Recipe

STEP_TITLES = {
    "1": "Step 1: modern architectures",
    "2": "Step 2: reinforcement learning",
    "3": "Step 3: generative models",
    "4": "Step 4: large-scale systems and MLOps",
    "5": "Step 5: specializations",
    "final": "Final projects",
}


@dataclass
class Row:
    recipe: str
    step: str
    topic: str
    quick: bool
    bar: str
    seeds: list[int]
    metric: str = ""
    deterministic: bool = False
    values: list[float] = field(default_factory=list)
    passed: list[bool] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ran(self) -> bool:
        return self.error is None

    def value_text(self) -> str:
        if not self.values:
            return "n/a"
        if len(self.values) == 1:
            return f"{self.values[0]:.4g}"
        return f"{statistics.mean(self.values):.4g} ± {statistics.stdev(self.values):.2g}"

    def seed_text(self) -> str:
        """Every seed's figure; a seed that missed its bar is marked so that it shows."""
        if self.deterministic:
            return "deterministic: one measurement"
        return " · ".join(f"s{seed} {value:.4g}" + ("" if ok else " **MISSED**")
                          for seed, value, ok in zip(self.seeds, self.values, self.passed, strict=False))

    def misses(self) -> list[str]:
        return [f"`{self.recipe}` seed {seed}: {self.metric} = {value:.4g} does not meet {self.bar}"
                for seed, value, ok in zip(self.seeds, self.values, self.passed, strict=False) if not ok]

    def passed_text(self) -> str:
        if not self.ran:
            return "error"
        return f"{sum(self.passed)}/{len(self.passed)}" if len(self.passed) > 1 else (
            "yes" if all(self.passed) else "no")

    def seconds_text(self) -> str:
        return f"{statistics.mean(self.seconds):.1f}" if self.seconds else "n/a"


def run_one(recipe: Recipe, quick: bool, seeds: list[int], out: Path, quiet: bool, track: bool) -> Row:
    bar = recipe.bar_for(quick)
    seeds = seeds[:1] if recipe.deterministic else seeds
    row = Row(recipe.name, recipe.step, recipe.topic, quick, str(bar), seeds, bar.metric,
              recipe.deterministic)
    for seed in seeds:
        run_dir = out / recipe.name / f"seed{seed}"
        try:
            result = run_recipe(recipe.name, quick=quick, seed=seed, out=run_dir, quiet=quiet, track=track)
        except Exception as err:  # the report records a failed recipe and goes on
            row.error = f"{type(err).__name__}: {err}".splitlines()[0][:300]
            (out / recipe.name).mkdir(parents=True, exist_ok=True)
            (out / recipe.name / "error.txt").write_text(traceback.format_exc())
            return row
        row.values.append(result.metrics.get(bar.metric, float("nan")))
        row.passed.append(result.passed)
        row.seconds.append(result.seconds)
        if not row.figures:
            row.figures = [str(run_dir / a) for a in result.artifacts if a.endswith(".png")]
    return row


def run_many(names: list[str] | None, quick: bool, seeds: list[int], out: Path,
             quiet: bool = False, track: bool = True, echo: bool = True) -> list[Row]:
    recipes = [get_recipe(n) for n in names] if names else all_recipes()
    if out.exists() and any(out.iterdir()):
        raise InputError(f"--out {out} exists and is not empty; pick a new folder")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, recipe in enumerate(recipes, 1):
        if echo:
            print(f"[{i}/{len(recipes)}] {recipe.name} ({'quick' if quick else 'full'})", flush=True)
        row = run_one(recipe, quick, seeds, out, quiet, track)
        if echo:
            status = f"error: {row.error}" if row.error else f"{row.value_text()} passed={row.passed_text()}"
            print(f"        {status}  [{row.seconds_text()} s]", flush=True)
            for miss in row.misses():
                print(f"        MISSED {miss.replace('`', '')}", flush=True)
        rows.append(row)
    return rows


def markdown_table(rows: list[Row], figures: bool = False, base: Path | None = None) -> str:
    lines = []
    for step in sorted({r.step for r in rows}, key=lambda s: list(STEP_TITLES).index(s) if s in STEP_TITLES else 99):
        lines += [f"### {STEP_TITLES.get(step, 'Step ' + step)}", "",
                  "| recipe | topic | bar | result | per seed | passed | seconds |",
                  "|---|---|---|---|---|---|---|"]
        for r in (r for r in rows if r.step == step):
            result = r.value_text() if r.ran else f"error: {r.error}"
            lines.append(f"| `{r.recipe}` | {r.topic} | {r.bar} | {result} | {r.seed_text()} | "
                         f"{r.passed_text()} | {r.seconds_text()} |")
        lines.append("")
        if figures:
            for r in (r for r in rows if r.step == step):
                for fig in r.figures:
                    rel = Path(fig).relative_to(base) if base else Path(fig)
                    lines.append(f"![{r.recipe}]({rel})")
            lines.append("")
    misses = [m for r in rows for m in r.misses()]
    if misses:
        lines += [f"### Missed: {len(misses)} run(s) did not meet their bar", "",
                  *(f"- {m}" for m in misses), ""]
    return "\n".join(lines)


def _img(path: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(Path(path).name)}">'


def write_report(rows: list[Row], out: Path, quick: bool) -> tuple[Path, Path]:
    setting = "quick" if quick else "full"
    ran = sum(r.ran for r in rows)
    passed = sum(r.ran and all(r.passed) for r in rows)
    summary = f"{len(rows)} recipes ({setting} setting): {ran} ran, {passed} met their bar."
    md = f"# aiforge roadmap report\n\n{summary}\n\n{markdown_table(rows, figures=True, base=out)}"
    atomic_write_text(out / "report.md", md)
    atomic_write_json(out / "report.json", [asdict(r) for r in rows])

    sections = []
    for step in dict.fromkeys(r.step for r in rows):
        body = []
        for r in (r for r in rows if r.step == step):
            css = "error" if not r.ran else ("pass" if all(r.passed) else "fail")
            result = html.escape(r.value_text() if r.ran else r.error or "")
            body.append(
                f'<tr class="{css}"><td><code>{r.recipe}</code></td><td>{html.escape(r.topic)}</td>'
                f"<td>{html.escape(r.bar)}</td><td>{result}</td>"
                f"<td>{html.escape(r.seed_text()).replace('**MISSED**', '<b class=miss>MISSED</b>')}</td>"
                f"<td>{r.passed_text()}</td><td>{r.seconds_text()}</td></tr>"
                + (f'<tr><td colspan="7">{"".join(_img(f) for f in r.figures)}</td></tr>' if r.figures else ""))
        sections.append(
            f"<h2>{html.escape(STEP_TITLES.get(step, 'Step ' + step))}</h2><table><tr><th>recipe</th>"
            f"<th>topic</th><th>bar</th><th>result</th><th>per seed</th><th>passed</th><th>seconds</th></tr>"
            f"{''.join(body)}</table>")
    misses = [m.replace("`", "") for r in rows for m in r.misses()]
    missed = (f'<h2 class="miss">Missed: {len(misses)} run(s) did not meet their bar</h2><ul>'
              + "".join(f"<li>{html.escape(m)}</li>" for m in misses) + "</ul>") if misses else ""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>aiforge roadmap report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;width:100%;margin-bottom:1.5em}}td,th{{border:1px solid #ddd;padding:6px 8px;text-align:left}}
tr.pass td:nth-child(6){{color:#1a7f37;font-weight:bold}}tr.fail td:nth-child(6),tr.error td,b.miss,h2.miss{{color:#cf222e}}
img{{max-width:48%;margin:4px}}</style></head><body><h1>aiforge roadmap report</h1>
<p>{html.escape(summary)}</p>{missed}{''.join(sections)}</body></html>"""
    atomic_write_text(out / "report.html", page)
    return out / "report.md", out / "report.html"


def bench_summary(rows: list[Row], out: Path) -> tuple[Path, Path]:
    atomic_write_text(out / "bench.md", markdown_table(rows))
    atomic_write_json(out / "bench.json", [asdict(r) | {"mean": statistics.mean(r.values) if r.values else None}
                                           for r in rows])
    return out / "bench.md", out / "bench.json"

