"""Step 3 benchmark: digits-FD, class coverage and seconds of every generative recipe, with
the two anchors (real test halves = floor, a pixel-space Gaussian = ceiling) computed the
same way. Runs each recipe once per seed in this process, one at a time, and writes one JSON
line per run plus a Markdown table (mean ± std over seeds).

    python bench/generative.py --quick --seeds 0 1 2 --out bench/results/generative
    python bench/generative.py --seeds 0 1 2                 # full settings (slow)
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from aiforge.core import run_recipe
from aiforge.generative.evaluation import anchors, gaussian_baseline, reference, score_samples

RECIPES = ("generative.vae", "generative.dcgan", "generative.ddpm")


def _anchor_rows() -> list[dict[str, object]]:
    started = time.perf_counter()
    ref = anchors()
    baseline = score_samples(gaussian_baseline(5 * reference().size))
    return [
        {"name": "real test half A (floor)", "digits_fd": ref["fd_floor_real_halves"],
         "classes_covered": 10.0, "seconds": 0.0},
        {"name": "pixel Gaussian (ceiling)", **baseline, "seconds": time.perf_counter() - started},
    ]


def _fmt(values: list[float], digits: int = 1) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="quick settings")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("--out", type=Path, default=Path("bench/results/generative"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)

    rows: dict[str, list[dict[str, float]]] = {}
    lines = []
    for name in args.recipes:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                result = run_recipe(name, quick=args.quick, seed=seed, out=Path(tmp) / "run",
                                    quiet=True, track=False)
            record = {"recipe": name, "quick": args.quick, "seed": seed, "seconds": result.seconds,
                      "passed": result.passed, **result.metrics}
            lines.append(json.dumps(record))
            rows.setdefault(name, []).append({"seconds": result.seconds, **result.metrics})
            print(lines[-1], flush=True)

    table = ["| model | digits-FD | classes covered | min / max class share | seconds |",
             "|---|---|---|---|---|"]
    for anchor in _anchor_rows():
        shares = (f"{anchor['min_class_share']:.3f} / {anchor['max_class_share']:.3f}"
                  if "min_class_share" in anchor else "-")
        table.append(f"| {anchor['name']} | {anchor['digits_fd']:.1f} | {anchor['classes_covered']:.0f} "
                     f"| {shares} | {anchor['seconds']:.1f} |")
    for name, runs in rows.items():
        def col(key: str, runs: list[dict[str, float]] = runs) -> list[float]:
            return [r[key] for r in runs]
        table.append(f"| {name}{' (quick)' if args.quick else ''} | {_fmt(col('digits_fd'))} "
                     f"| {_fmt(col('classes_covered'), 0)} | {_fmt(col('min_class_share'), 3)} / "
                     f"{_fmt(col('max_class_share'), 3)} | {_fmt(col('seconds'), 0)} |")
    tag = "quick" if args.quick else "full"
    (args.out / f"{tag}.jsonl").write_text("\n".join(lines) + "\n")
    (args.out / f"{tag}.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
