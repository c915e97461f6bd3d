"""Detection benchmark: mAP and CPU latency per image of the three detectors on the same
shapes test split, over several seeds, written as JSON.

    python bench/detection.py            # full settings, seeds 0 1 2 (about an hour of CPU)
    python bench/detection.py --quick    # quick settings, seed 0 (about a minute): a smoke run

Every recipe is trained by `run_recipe` and evaluated on the same fixed test split (500
images in the full settings, 100 in the quick ones); latency is the median wall time of one
single-image prediction with post-processing (1 torch thread). The target from
shared/TARGETS.md: the YOLO-style detector faster than Faster R-CNN at equal or better
mAP@0.5. The quick settings only show that the pipeline runs: 20 seconds of training leave
the two-stage detectors near zero mAP (their quick bar is on the loss), so only the full
run answers the target.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from aiforge.core import run_recipe

DETECTORS = {  # recipe: (box mAP@0.5 metric, box mAP@[.5:.95] metric)
    "vision.detect-yolo": ("test_map50", "test_map"),
    "vision.detect-frcnn": ("test_map50", "test_map"),
    "vision.segment-maskrcnn": ("test_box_map50", "test_box_map"),
}


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def bench_recipe(recipe: str, quick: bool, seeds: list[int], tmp: Path) -> dict[str, object]:
    """Train `recipe` once per seed; mean ± std of its test figures."""
    map50_key, map_key = DETECTORS[recipe]
    runs = [run_recipe(recipe, quick=quick, seed=seed, out=tmp / f"{recipe}-{seed}", track=False,
                       quiet=True) for seed in seeds]
    row: dict[str, object] = {
        "recipe": recipe, "quick": quick, "seeds": seeds,
        "map50": mean_std([r.metrics[map50_key] for r in runs]),
        "map": mean_std([r.metrics[map_key] for r in runs]),
        "latency_ms": mean_std([r.metrics["latency_ms"] for r in runs]),
        "train_seconds": mean_std([r.seconds for r in runs]),
        "passed": [r.passed for r in runs],
    }
    if "test_mask_map50" in runs[0].metrics:
        row["mask_map50"] = mean_std([r.metrics["test_mask_map50"] for r in runs])
    return row


def target(rows: dict[str, dict]) -> dict[str, object]:
    """shared/TARGETS.md: YOLO faster than Faster R-CNN at equal or better mAP@0.5."""
    yolo, frcnn = rows["vision.detect-yolo"], rows["vision.detect-frcnn"]
    return {
        "latency_ratio_yolo_over_frcnn": yolo["latency_ms"]["mean"] / frcnn["latency_ms"]["mean"],
        "map50_difference_yolo_minus_frcnn": yolo["map50"]["mean"] - frcnn["map50"]["mean"],
        "target_met": yolo["latency_ms"]["mean"] < frcnn["latency_ms"]["mean"]
        and yolo["map50"]["mean"] >= frcnn["map50"]["mean"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--quick", action="store_true",
                        help="quick settings and one seed (about a minute): a smoke run")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="seeds to train (default: 0 1 2, or 0 with --quick)")
    parser.add_argument("--recipes", nargs="+", default=list(DETECTORS), choices=list(DETECTORS))
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON file (default bench/results/detection[-quick].json)")
    args = parser.parse_args()
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    out = args.out or Path("bench/results") / ("detection-quick.json" if args.quick else "detection.json")

    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-detection-") as tmp:
        for recipe in args.recipes:
            rows[recipe] = bench_recipe(recipe, args.quick, seeds, Path(tmp))
            print(json.dumps(rows[recipe]), flush=True)
    summary = target(rows) if {"vision.detect-yolo", "vision.detect-frcnn"} <= set(rows) else {}
    print(json.dumps(summary))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": list(rows.values()), "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
