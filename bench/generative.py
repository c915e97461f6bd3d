"""Step 3 benchmark: every generative recipe with an image output, one table per kind of output.

- **Samples of the data distribution** (VAE, DCGAN, DDPM, StyleGAN): digits-FD, class coverage
  and seconds, ranked by digits-FD together with two anchors computed the same way (real
  held-out half A = floor, a pixel-space Gaussian = ceiling).
- **Translation** (CycleGAN): the digits-FD of *translated printed digits* beside that of the
  printed digits themselves, and the share that keeps its digit. One translated image per
  printed source is not a sample of the digits distribution, so it gets its own table.
- **Augmentation** (GAN samples as training data): the classifier's accuracy gain in points,
  and the digits-FD and label agreement of the synthetic set its GAN learned from 100 images.

Runs each recipe once per seed in this process, one at a time, and writes one JSON line per
run plus a Markdown file of the tables (mean ± std over seeds) and the bars they were judged by.

    python bench/generative.py --quick --seeds 0 1 2 --out bench/results/generative
    python bench/generative.py --seeds 0 1 2                # full settings (about an hour)
    python bench/generative.py --quick --dataset shapes     # DCGAN and DDPM on colour shapes

`--dataset` runs the recipes whose config has a `dataset` field (DCGAN and DDPM) on another
image set of `generative.datasets` (`--data-dir` names an ImageFolder) and ranks them by that
set's own FD (`shapes_fd`, `imagefolder_fd`) with that set's anchors. The bars are the digits':
there is no bar column. The quick settings are sized for the 8x8 digits; on 32x32 colour images
the same settings take many times longer (see docs/step3-generative.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from aiforge.core import run_recipe
from aiforge.core.errors import InputError
from aiforge.core.registry import get_recipe
from aiforge.generative.data import real_test_halves
from aiforge.generative.datasets import ImageDataConfig, ImageSet, load_image_set
from aiforge.generative.evaluation import gaussian_baseline, reference
from aiforge.generative.image_eval import feature_space, score_generated

SAMPLES, TRANSLATION, AUGMENTATION = "samples", "translation", "augmentation"
KIND = {
    "generative.vae": SAMPLES,
    "generative.dcgan": SAMPLES,
    "generative.ddpm": SAMPLES,
    "generative.stylegan": SAMPLES,
    "generative.cyclegan": TRANSLATION,
    "generative.augment": AUGMENTATION,
}
"""What each generative recipe outputs, which decides its table (a test checks that every
registered generative recipe is here)."""

Run = dict[str, float]
"""One run's metrics, with its wall `seconds` and `passed` (1.0 or 0.0) added."""


@dataclass(frozen=True)
class Column:
    """One table column: its header and the metric it shows, to `digits` decimals."""

    header: str
    key: str
    """The metric's name in the recipe's result."""
    digits: int = 1


def sample_columns(fd_key: str) -> tuple[Column, ...]:
    """Columns of the samples table; `fd_key` is digits_fd, shapes_fd or imagefolder_fd."""
    return (Column(f"{fd_key.removesuffix('_fd')}-FD (lower is better)", fd_key),
            Column("classes covered", "classes_covered", 0),
            Column("min class share", "min_class_share", 3),
            Column("max class share", "max_class_share", 3),
            Column("seconds", "seconds", 0))


# Metric names as `generative.cyclegan_eval.evaluate_translation` and `generative.augment` write them.
TRANSLATION_COLUMNS = (
    Column("digits-FD of the translated printed digits", "digits_fd_translated"),
    Column("digits-FD of the printed digits, untranslated", "digits_fd_printed"),
    Column("identity kept, printed → handwritten", "identity_kept_p2h", 3),
    Column("same classifier on the untranslated printed digits", "identity_untranslated_p2h", 3),
    Column("identity kept, handwritten → printed", "identity_kept_h2p", 3),
    Column("seconds", "seconds", 0),
)
AUGMENTATION_COLUMNS = (
    Column("accuracy gain (points, mean over classifier seeds)", "gain_points_mean", 2),
    Column("test accuracy, real images only", "accuracy_baseline_mean", 3),
    Column("test accuracy, + synthetic images", "accuracy_augmented_mean", 3),
    Column("digits-FD of the synthetic set", "synthetic_digits_fd"),
    Column("synthetic label agreement", "synthetic_label_agreement", 3),
    Column("seconds", "seconds", 0),
)


# --- the tables ---------------------------------------------------------------------------

def fmt(values: Sequence[float], digits: int = 1) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def cell(runs: list[Run], column: Column) -> str:
    """Mean ± std of a metric over the runs; '-' where no run reports it, and the count where
    only some do (a mean over fewer seeds must say so)."""
    values = [run[column.key] for run in runs if column.key in run]
    if not values:
        return "-"
    text = fmt(values, column.digits)
    return text if len(values) == len(runs) else f"{text} ({len(values)} of {len(runs)} runs)"


def bar_cell(runs: list[Run]) -> str:
    """Runs that met their recipe's bar, as 'k/n'; '-' for rows without a bar (anchors)."""
    if any("passed" not in run for run in runs):
        return "-"
    return f"{sum(int(run['passed']) for run in runs)}/{len(runs)}"


def markdown_table(columns: Sequence[Column], rows: list[tuple[str, list[Run]]],
                   with_bar: bool) -> list[str]:
    headers = ["model", *(c.header for c in columns), *(["bar met"] if with_bar else [])]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for label, runs in rows:
        cells = [label, *(cell(runs, c) for c in columns), *([bar_cell(runs)] if with_bar else [])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def labelled(by_recipe: dict[str, list[Run]]) -> list[tuple[str, list[Run]]]:
    return [(f"`{name}`", runs) for name, runs in by_recipe.items()]


def ranked(rows: list[tuple[str, list[Run]]], key: str) -> list[tuple[str, list[Run]]]:
    """Rows sorted by their mean `key`, lowest (best) first, anchors among them: a model worse
    than the ceiling shows below it. A row that did not report `key` goes last, not away."""
    def mean(row: tuple[str, list[Run]]) -> float:
        values = [run[key] for run in row[1] if key in run]
        return statistics.mean(values) if values else float("inf")
    return sorted(rows, key=mean)


def report(by_recipe: dict[str, list[Run]], anchors: dict[str, Run], *, fd_key: str,
           setting: str, bars: dict[str, str]) -> str:
    """The Markdown of one bench invocation: one table per kind of output present. `anchors`
    maps 'floor' and 'ceiling' to their scores; `bars` the recipes' bars (empty: no bar
    column, as on a set the bars were not written for)."""
    def of(kind: str) -> dict[str, list[Run]]:
        return {name: runs for name, runs in by_recipe.items() if KIND[name] == kind}

    with_bar, data = bool(bars), fd_key.removesuffix("_fd")
    out: list[str] = []
    if samples := of(SAMPLES):
        rows = ranked([(f"real held-out half A ({data} floor)", [anchors["floor"]]),
                       *labelled(samples),
                       (f"pixel Gaussian ({data} ceiling)", [anchors["ceiling"]])], fd_key)
        out += [f"### Samples of the {data} distribution, ranked by {data}-FD ({setting})", "",
                *markdown_table(sample_columns(fd_key), rows, with_bar), ""]
    if translation := of(TRANSLATION):
        out += [f"### Translation, printed → handwritten digits ({setting})", "",
                "Translated test printed digits, one per source image: not samples of the digits "
                "distribution, so not ranked with the samples. Identity kept = the share the "
                "target domain's classifier reads as the source's digit.", "",
                *markdown_table(TRANSLATION_COLUMNS, labelled(translation),
                                with_bar), ""]
    if augmentation := of(AUGMENTATION):
        out += [f"### GAN samples as training data, scarce labels ({setting})", "",
                "Gain = test accuracy with synthetic images in the batches minus without, in "
                "points; the synthetic set comes from a GAN trained on the labelled images only.",
                "", *markdown_table(AUGMENTATION_COLUMNS, labelled(augmentation),
                                    with_bar), ""]
    if bars:
        out += ["Bars (a run meets its bar when every condition holds):", "",
                *(f"- `{name}`: {bar}" for name, bar in bars.items()), ""]
    return "\n".join(out)


# --- the runs -----------------------------------------------------------------------------

def anchor_runs(data: ImageSet) -> dict[str, Run]:
    """The set's floor (held-out half A against half B) and ceiling (a full-covariance pixel
    Gaussian), scored exactly as the recipes score their samples, with their class shares."""
    if data.name == "digits":
        floor, ceiling = real_test_halves()[0].x, gaussian_baseline(5 * reference().size)
    else:
        space = feature_space(data)
        floor, ceiling = space.half_a, space.gaussian_baseline()
    return {"floor": score_generated(data, floor), "ceiling": score_generated(data, ceiling)}


def data_overrides(dataset: str, data_dir: Path | None) -> dict[str, str]:
    """Config overrides that select the image set; none for the digits (every recipe's own)."""
    if data_dir is not None and dataset != "imagefolder":
        raise InputError("--data-dir goes with --dataset imagefolder only")
    if dataset == "digits":
        return {}
    return {"dataset": dataset, **({"data_dir": str(data_dir)} if data_dir else {})}


def check_recipes(names: list[str], overrides: dict[str, str], quick: bool) -> None:
    """Refuse a bad recipe list or data set before the first (long) run."""
    for name in names:
        recipe = get_recipe(name)                            # unknown name: InputError
        if name not in KIND:
            raise InputError(f"{name!r} is not a generative image recipe ({', '.join(KIND)})")
        if overrides and "dataset" not in recipe.config.model_fields:
            raise InputError(f"{name} trains on the digits only; drop it or --dataset")
        recipe.make_config(quick, 0, overrides)               # a bad --data-dir fails here


def run_all(names: list[str], seeds: list[int], quick: bool,
            overrides: dict[str, str]) -> tuple[dict[str, list[Run]], list[str]]:
    """Every recipe once per seed, one at a time: the runs by recipe, and one JSON line each."""
    by_recipe: dict[str, list[Run]] = {}
    lines = []
    for name in names:
        for seed in seeds:
            with tempfile.TemporaryDirectory() as tmp:
                result = run_recipe(name, quick=quick, seed=seed, out=Path(tmp) / "run",
                                    overrides=overrides, quiet=True, track=False)
            record = {"recipe": name, "quick": quick, "seed": seed, **overrides,
                      "seconds": result.seconds, "passed": result.passed, **result.metrics}
            lines.append(json.dumps(record))
            by_recipe.setdefault(name, []).append(
                {**result.metrics, "seconds": result.seconds, "passed": float(result.passed)})
            print(lines[-1], flush=True)
    return by_recipe, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="quick settings")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--recipes", nargs="+", default=None,
                        help="default: every recipe that can train on --dataset")
    parser.add_argument("--dataset", choices=["digits", "shapes", "imagefolder"], default="digits")
    parser.add_argument("--data-dir", type=Path, default=None, help="with --dataset imagefolder")
    parser.add_argument("--out", type=Path, default=Path("bench/results/generative"))
    args = parser.parse_args()
    try:
        overrides = data_overrides(args.dataset, args.data_dir)
        names = args.recipes or [name for name in KIND if not overrides
                                 or "dataset" in get_recipe(name).config.model_fields]
        check_recipes(names, overrides, args.quick)
        data = load_image_set(ImageDataConfig.from_dict(overrides))
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)

    by_recipe, lines = run_all(names, args.seeds, args.quick, overrides)
    setting = f"{'quick' if args.quick else 'full'} settings, seeds {' '.join(map(str, args.seeds))}"
    # the bars are the digits': on another set no run can meet them, so no bar column there
    bars = {} if overrides else {name: str(get_recipe(name).bar_for(args.quick)) for name in names}
    anchors = anchor_runs(data) if any(KIND[name] == SAMPLES for name in names) else {}
    text = report(by_recipe, anchors, fd_key=f"{args.dataset}_fd", setting=setting, bars=bars)
    tag = ("quick" if args.quick else "full") + ("" if args.dataset == "digits" else f"-{args.dataset}")
    (args.out / f"{tag}.jsonl").write_text("\n".join(lines) + "\n")
    (args.out / f"{tag}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
