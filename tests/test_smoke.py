"""Every registered recipe's quick setting runs, writes its result and clears its quick bar."""

import json

import pytest

from aiforge.core import all_recipes, run_recipe


@pytest.mark.parametrize("name", [r.name for r in all_recipes()])
def test_quick_setting_clears_the_quick_bar(name, tmp_path):
    result = run_recipe(name, quick=True, seed=0, out=tmp_path, quiet=True, track=False)
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["recipe"] == name and record["quick"] is True
    assert all((tmp_path / a).exists() for a in record["artifacts"])
    assert result.passed, f"{name}: {result.metrics} misses {result.bar}"
