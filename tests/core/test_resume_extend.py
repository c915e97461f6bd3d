"""Resuming is honest: a finished run is left alone, an extension is explicit and recorded,
and a run's seconds (judged against its budget) add up every sitting."""

import json
import shutil

import pytest

from aiforge.core import InputError, run_recipe
from aiforge.core.runner import RunCompleteError

RECIPE = "vision.cnn-digits"
CONSTANT = {"schedule": "constant", "width": "8"}


def _run(out, epochs, **kwargs):
    return run_recipe(RECIPE, quick=True, seed=5, out=out, overrides={**CONSTANT, "epochs": str(epochs)},
                      quiet=True, track=False, **kwargs)


def _snapshot(folder):
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resuming_a_finished_run_says_so_and_changes_nothing(tmp_path):
    out = tmp_path / "done"
    _run(out, 2)
    before = _snapshot(out)
    with pytest.raises(RunCompleteError, match=r"is complete.*nothing changed.*--set epochs=N"):
        run_recipe(RECIPE, resume=out, quiet=True, track=False)
    assert _snapshot(out) == before


def test_an_extended_run_equals_one_trained_that_long_and_records_the_extension(tmp_path):
    _run(tmp_path / "short", 2)
    extended = run_recipe(RECIPE, resume=tmp_path / "short", overrides={"epochs": "3"}, quiet=True,
                          track=False)
    straight = _run(tmp_path / "straight", 3)
    assert extended.metrics == straight.metrics
    assert extended.metrics["epochs_run"] == 3
    meta = json.loads((tmp_path / "short" / "run.json").read_text())
    assert meta["config"]["epochs"] == 3
    [change] = meta["extensions"]
    assert (change["field"], change["from"], change["to"]) == ("epochs", 2, 3)
    assert change["previous_metrics"]["epochs_run"] == 2
    assert [s["kind"] for s in meta["segments"]] == ["start", "resume"]
    assert len(extended.segments) == 2
    assert extended.seconds == pytest.approx(sum(extended.segments), abs=1e-3)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"lr": "0.1"}, "only its length field.*epochs.*not 'lr'"),
    ({"epochs": "2"}, "extending a run means more training"),
    ({"epochs": "1"}, "extending a run means more training"),
])
def test_an_extension_takes_only_longer_length_fields_and_changes_nothing(tmp_path, overrides, message):
    out = tmp_path / "run"
    _run(out, 2)
    before = _snapshot(out)
    with pytest.raises(InputError, match=message):
        run_recipe(RECIPE, resume=out, overrides=overrides, quiet=True, track=False)
    assert _snapshot(out) == before


def test_a_recipe_without_length_fields_cannot_be_extended(tmp_path, monkeypatch):
    from aiforge.vision.cnn_digits import DigitsCNNConfig

    out = tmp_path / "run"
    _run(out, 2)
    monkeypatch.setattr(DigitsCNNConfig, "length_fields", ())
    with pytest.raises(InputError, match="declares no length field"):
        run_recipe(RECIPE, resume=out, overrides={"epochs": "3"}, quiet=True, track=False)
    with pytest.raises(RunCompleteError, match=r"is complete; nothing to resume, nothing changed$"):
        run_recipe(RECIPE, resume=out, quiet=True, track=False)


def test_a_killed_sitting_counts_toward_the_budget(tmp_path):
    """Two sittings: the first (killed after its checkpoint) counts up to its last file."""
    out = tmp_path / "run"
    _run(out, 2)
    meta = json.loads((out / "run.json").read_text())
    # Make the run look as if it had been killed 100 s into its first sitting, after its
    # epoch-1 checkpoint: unfinished segment, no result.
    (out / "result.json").unlink()
    shutil.rmtree(out / "checkpoints" / "step-000002")
    first = meta["segments"][0]
    first.update(seconds=None, started=first["started"] - 100.0)
    first.pop("ended")
    (out / "run.json").write_text(json.dumps(meta))
    result = run_recipe(RECIPE, resume=out, quiet=True, track=False)
    assert len(result.segments) == 2 and result.segments[0] >= 100.0
    assert result.seconds == pytest.approx(sum(result.segments), abs=1e-3)
    saved = json.loads((out / "result.json").read_text())
    assert saved["seconds"] >= 100.0 and saved["segments"] == result.segments


def test_the_budget_is_judged_on_every_sitting_together(tmp_path, monkeypatch):
    """A full run over its budget in total has not met its bar, even if each sitting alone
    was within it. (The bar is made one any run meets, so that only time can fail it.)"""
    from dataclasses import replace

    from aiforge.core import Bar, get_recipe, registry

    recipe = replace(get_recipe(RECIPE), bar=Bar("epochs_run", ">=", 1))
    monkeypatch.setitem(registry._REGISTRY, RECIPE, recipe)
    full = {**CONSTANT, "epochs": "2"}
    in_one = run_recipe(RECIPE, out=tmp_path / "one", overrides=full, quiet=True, track=False)
    assert in_one.passed and in_one.seconds < recipe.budget_s

    out = tmp_path / "two"
    run_recipe(RECIPE, out=out, overrides=full, quiet=True, track=False)
    meta = json.loads((out / "run.json").read_text())
    (out / "result.json").unlink()
    first = meta["segments"][0]
    first.update(seconds=None, started=first["started"] - recipe.budget_s)
    first.pop("ended")
    (out / "run.json").write_text(json.dumps(meta))
    result = run_recipe(RECIPE, resume=out, quiet=True, track=False)
    assert result.segments[1] < recipe.budget_s
    assert result.seconds > recipe.budget_s and not result.passed
