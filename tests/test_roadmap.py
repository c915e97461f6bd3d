"""The main job runs every recipe, survives a failing one and writes the report."""

from dataclasses import replace

import pytest
from typer.testing import CliRunner

from aiforge.cli import app
from aiforge.core import Bar, RecipeConfig, get_recipe, register
from aiforge.core import registry as registry_module
from aiforge.roadmap import run_many, write_report


def _explode(cfg, ctx):
    raise RuntimeError("the data set went missing")


@pytest.fixture
def with_failing_recipe():
    broken = register(replace(get_recipe("rl.value-iteration"), name="test.broken", train=_explode,
                              config=RecipeConfig, quick={}, bar=Bar("x", ">=", 1.0),
                              quick_bar=Bar("x", ">=", 1.0)))
    yield broken
    registry_module._REGISTRY.pop("test.broken")


def test_report_records_a_failure_and_goes_on(tmp_path, with_failing_recipe):
    rows = run_many(["test.broken", "rl.value-iteration"], quick=True, seeds=[0], out=tmp_path,
                    quiet=True, track=False, echo=False)
    broken, good = rows
    assert broken.error == "RuntimeError: the data set went missing" and not broken.ran
    assert good.ran and good.passed == [True]
    md, page = write_report(rows, tmp_path, quick=True)
    text = md.read_text()
    assert "the data set went missing" in text and "`rl.value-iteration`" in text
    assert "Step 2: reinforcement learning" in text
    html = page.read_text()
    assert 'data:image/png;base64,' in html  # figures are embedded, the page stands alone
    assert (tmp_path / "test.broken" / "error.txt").read_text().count("Traceback") == 1


def test_roadmap_command_exits_1_when_a_recipe_failed(tmp_path, with_failing_recipe, monkeypatch):
    monkeypatch.setattr("aiforge.roadmap.all_recipes",
                        lambda: [with_failing_recipe, get_recipe("rl.value-iteration")])
    result = CliRunner().invoke(app, ["roadmap", "--quick", "--out", str(tmp_path / "r"), "--no-track"])
    assert result.exit_code == 1
    assert (tmp_path / "r" / "report.html").exists() and "test.broken" in result.stderr


def test_bench_writes_markdown_and_json_over_seeds(tmp_path):
    result = CliRunner().invoke(app, ["bench", "rl.value-iteration", "--quick", "--seeds", "2",
                                      "--out", str(tmp_path), "--no-track"])
    assert result.exit_code == 0, result.output
    assert "| `rl.value-iteration` |" in (tmp_path / "bench.md").read_text()
    import json
    rows = json.loads((tmp_path / "bench.json").read_text())
    assert rows[0]["seeds"] == [0, 1] and len(rows[0]["values"]) == 2


def test_a_full_run_over_its_cpu_budget_has_not_passed(tmp_path):
    from aiforge.core import run_recipe
    slow = register(replace(get_recipe("rl.value-iteration"), name="test.over-budget", budget_s=1e-6))
    try:
        full = run_recipe("test.over-budget", out=tmp_path / "full", quiet=True, track=False)
        quick = run_recipe("test.over-budget", quick=True, out=tmp_path / "quick", quiet=True, track=False)
    finally:
        registry_module._REGISTRY.pop(slow.name)
    assert full.metrics["success_rate_4x4"] >= 0.70 and not full.passed
    assert quick.passed


def _seed_as_metric(cfg, ctx):
    return {"x": float(cfg.seed)}


@pytest.fixture
def seed_recipes():
    base = replace(get_recipe("rl.value-iteration"), train=_seed_as_metric, config=RecipeConfig, quick={},
                   bar=Bar("x", ">=", 1.0), quick_bar=Bar("x", ">=", 1.0))
    made = [register(replace(base, name="test.seeded")),
            register(replace(base, name="test.exact", deterministic=True))]
    yield made
    for recipe in made:
        registry_module._REGISTRY.pop(recipe.name)


def test_bench_shows_a_missing_seed_as_prominently_as_the_mean(tmp_path, seed_recipes):
    result = CliRunner().invoke(app, ["bench", "test.seeded", "--quick", "--seeds", "3", "--out",
                                      str(tmp_path), "--no-track"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    table = (tmp_path / "bench.md").read_text()
    assert "s0 0 **MISSED** · s1 1 · s2 2" in table and "| 2/3 |" in table
    assert "Missed: 1 run(s)" in table and "`test.seeded` seed 0: x = 0 does not meet x >= 1" in table
    assert "MISSED test.seeded seed 0" in result.output


def test_bench_takes_a_first_seed_and_runs_a_deterministic_recipe_once(tmp_path, seed_recipes):
    rows = run_many(["test.seeded", "test.exact"], quick=True, seeds=[4, 5], out=tmp_path, quiet=True,
                    track=False, echo=False)
    assert rows[0].seeds == [4, 5] and rows[0].passed == [True, True]
    assert rows[1].seeds == [4] and rows[1].seed_text() == "deterministic: one measurement"
    result = CliRunner().invoke(app, ["bench", "test.seeded", "--quick", "--seeds", "2", "--first-seed", "7",
                                      "--out", str(tmp_path / "b"), "--no-track"])
    assert result.exit_code == 0 and "s7 7 · s8 8" in (tmp_path / "b" / "bench.md").read_text()
