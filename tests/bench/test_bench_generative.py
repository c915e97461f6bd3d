"""bench/generative.py: every generative recipe has a table, the columns name metrics the
recipes really write, the tables rank and label what they should, and bad input fails early."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from aiforge.core.errors import InputError
from aiforge.core.registry import all_recipes
from aiforge.core.result import Result
from aiforge.generative.augment import gains
from aiforge.generative.cyclegan import printed_domain
from aiforge.generative.cyclegan_eval import evaluate_translation
from aiforge.generative.data import real_test_halves
from aiforge.generative.datasets import load_image_set
from aiforge.generative.evaluation import anchors
from aiforge.generative.image_eval import score_generated


def _load_bench():
    path = Path(__file__).resolve().parents[2] / "bench" / "generative.py"
    spec = importlib.util.spec_from_file_location("bench_generative", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def test_every_registered_generative_recipe_has_a_table():
    registered = {r.name for r in all_recipes() if r.name.startswith("generative.")}
    assert registered == set(bench.KIND)
    assert set(bench.KIND.values()) == {bench.SAMPLES, bench.TRANSLATION, bench.AUGMENTATION}


def test_columns_name_metrics_the_recipes_write():
    # samples: what every GAN / diffusion / VAE recipe scores its images with
    digits = load_image_set(bench.ImageDataConfig.from_dict({}))
    sampled = score_generated(digits, real_test_halves()[0].x)
    assert {c.key for c in bench.sample_columns("digits_fd")} - {"seconds"} <= set(sampled)
    # translation: CycleGAN's grading, here of the identity map (so it gains no FD at all)
    printed = printed_domain(200, 1)
    graded = evaluate_translation(lambda x: x, lambda x: x, printed_train=printed_domain(100, 0),
                                  printed_test=printed,
                                  handwritten_test=(real_test_halves()[1].x, real_test_halves()[1].y))
    assert {c.key for c in bench.TRANSLATION_COLUMNS} - {"seconds"} <= set(graded)
    assert graded["digits_fd_translated"] == graded["digits_fd_printed"]
    # augmentation: the gain keys come from `gains`; the synthetic-set keys are set in `train`
    source = Path(sys.modules["aiforge.generative.augment"].__file__).read_text()
    keys = {c.key for c in bench.AUGMENTATION_COLUMNS} - {"seconds"}
    for key in keys - set(gains([0.5], [0.6])):
        assert f'metrics["{key}"]' in source, key


def _run(fd: float, seconds: float = 10.0, passed: bool = True, **extra: float):
    return {"digits_fd": fd, "classes_covered": 10.0, "min_class_share": 0.08,
            "max_class_share": 0.12, "seconds": seconds, "passed": float(passed), **extra}


def test_cells_mean_std_missing_partial_and_bar():
    runs = [_run(10.0, passed=True), _run(20.0, passed=False)]
    column = bench.Column("digits-FD", "digits_fd")
    assert bench.cell(runs, column) == "15.0 ± 7.1"
    assert bench.cell(runs[:1], column) == "10.0"
    assert bench.cell(runs, bench.Column("x", "nowhere")) == "-"
    runs[1]["extra"] = 3.0
    assert bench.cell(runs, bench.Column("x", "extra")) == "3.0 (1 of 2 runs)"
    assert bench.bar_cell(runs) == "1/2"
    assert bench.bar_cell([{"digits_fd": 1.0}]) == "-"  # an anchor has no bar


def _report(bars: dict[str, str]) -> str:
    by_recipe = {
        "generative.vae": [_run(240.0), _run(250.0)],
        "generative.ddpm": [_run(20.0), _run(30.0)],
        "generative.dcgan": [_run(50.0), _run(60.0, passed=False)],
        "generative.cyclegan": [{"digits_fd_translated": 90.0, "digits_fd_printed": 140.0,
                                 "identity_kept_p2h": 0.7, "seconds": 30.0, "passed": 0.0}],
        "generative.augment": [{"gain_points_mean": -1.5, "synthetic_label_agreement": 0.9,
                                "seconds": 20.0, "passed": 1.0}],
    }
    anchor = {"floor": _run(14.0), "ceiling": _run(210.0)}
    for run in anchor.values():
        del run["passed"], run["seconds"]
    return bench.report(by_recipe, anchor, fd_key="digits_fd", setting="quick settings, seeds 0 1",
                        bars=bars)


def test_report_ranks_samples_and_keeps_other_outputs_apart():
    text = _report({"generative.ddpm": "digits_fd < 120"})
    samples, translation, augmentation = text.split("### ")[1:]
    order = [line.split(" | ")[0] for line in samples.splitlines() if line.startswith("| ")][1:]
    assert order == ["| real held-out half A (digits floor)", "| `generative.ddpm`",
                     "| `generative.dcgan`", "| pixel Gaussian (digits ceiling)", "| `generative.vae`"]
    assert "| `generative.dcgan` | 55.0 ± 7.1 |" in samples
    assert "| pixel Gaussian (digits ceiling) | 210.0 | 10 | 0.080 | 0.120 | - | - |" in samples
    assert "1/2 |" in samples
    assert "cyclegan" not in samples and "augment" not in samples
    assert "digits-FD of the translated printed digits" in translation
    assert "| `generative.cyclegan` | 90.0 | 140.0 | 0.700 | - | - | 30 | 0/1 |" in translation
    assert "| `generative.augment` | -1.50 | - | - | - | 0.900 | 20 | 1/1 |" in augmentation
    assert "\n- `generative.ddpm`: digits_fd < 120\n" in augmentation


def test_report_without_bars_has_no_bar_column_and_names_the_set():
    runs = {"generative.dcgan": [{"shapes_fd": 300.0, "seconds": 5.0, "passed": 0.0}]}
    anchor = {"floor": {"shapes_fd": 0.6}, "ceiling": {"shapes_fd": 257.0}}
    text = bench.report(runs, anchor, fd_key="shapes_fd", setting="quick settings, seeds 0", bars={})
    assert "### Samples of the shapes distribution, ranked by shapes-FD" in text
    assert "| model | shapes-FD (lower is better) |" in text
    assert "bar met" not in text and "Bars:" not in text
    assert "| `generative.dcgan` | 300.0 | - | - | - | 5 |" in text


def test_digits_anchors_are_the_recipes_floor_and_ceiling():
    got = bench.anchor_runs(load_image_set(bench.ImageDataConfig.from_dict({})))
    ref = anchors()
    assert got["floor"]["digits_fd"] == pytest.approx(ref["fd_floor_real_halves"], rel=1e-9)
    assert got["ceiling"]["digits_fd"] == pytest.approx(ref["fd_ceiling_gaussian"], rel=1e-9)
    assert got["floor"]["classes_covered"] == 10.0


@pytest.mark.parametrize(("names", "overrides", "message"), [
    (["generative.nope"], {}, "unknown recipe"),
    (["rl.value-iteration"], {}, "not a generative image recipe"),
    (["generative.vae"], {"dataset": "shapes"}, "trains on the digits only"),
    (["generative.dcgan"], {"dataset": "imagefolder"}, "data_dir"),
])
def test_bad_recipe_lists_fail_before_any_run(names, overrides, message):
    with pytest.raises(InputError, match=message):
        bench.check_recipes(names, overrides, quick=True)


def test_data_overrides():
    assert bench.data_overrides("digits", None) == {}
    assert bench.data_overrides("shapes", None) == {"dataset": "shapes"}
    assert bench.data_overrides("imagefolder", Path("d")) == {"dataset": "imagefolder", "data_dir": "d"}
    with pytest.raises(InputError, match="--data-dir"):
        bench.data_overrides("digits", Path("d"))


def test_main_prints_one_error_line_and_exits_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, "argv", ["generative.py", "--dataset", "imagefolder", "--data-dir",
                                      str(tmp_path / "missing"), "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exit_info:
        bench.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_main_runs_every_recipe_and_seed_and_writes_both_files(monkeypatch, tmp_path):
    """The plumbing, with the training replaced by a stand-in that echoes its arguments."""
    calls = []

    def fake_run(name, *, quick, seed, out, overrides, quiet, track):
        calls.append((name, seed, quick, overrides))
        metrics = ({"digits_fd": 30.0 + seed} if name == "generative.ddpm"
                   else {"digits_fd_translated": 100.0, "identity_kept_p2h": 0.6})
        return Result(name, quick, seed, 1.0, metrics, {}, passed=True)

    monkeypatch.setattr(bench, "run_recipe", fake_run)
    monkeypatch.setattr(bench, "anchor_runs", lambda data: {"floor": {"digits_fd": 14.0},
                                                            "ceiling": {"digits_fd": 210.0}})
    monkeypatch.setattr(sys, "argv", ["generative.py", "--quick", "--seeds", "0", "1", "--recipes",
                                      "generative.ddpm", "generative.cyclegan", "--out", str(tmp_path)])
    bench.main()
    assert calls == [("generative.ddpm", 0, True, {}), ("generative.ddpm", 1, True, {}),
                     ("generative.cyclegan", 0, True, {}), ("generative.cyclegan", 1, True, {})]
    records = [json.loads(line) for line in (tmp_path / "quick.jsonl").read_text().splitlines()]
    assert [(r["recipe"], r["seed"], r["passed"]) for r in records][:2] == [
        ("generative.ddpm", 0, True), ("generative.ddpm", 1, True)]
    text = (tmp_path / "quick.md").read_text()
    assert "| `generative.ddpm` | 30.5 ± 0.7 |" in text
    assert "| `generative.cyclegan` | 100.0 ± 0.0 | - | 0.600 ± 0.000 |" in text
    assert "GAN samples as training data" not in text
    assert "- `generative.ddpm`: digits_fd < 120" in text
