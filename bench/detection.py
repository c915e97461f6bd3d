"""Detection benchmark: mAP and CPU latency per image of the three detectors on the same
shapes test split, over several seeds, written as JSON.

    python bench/detection.py                 # full settings, seeds 0 1 2 (about an hour)
    python bench/detection.py --quick --seeds 0 --out runs/bench-detection-quick.json

Every recipe is trained by `run_recipe` and evaluated on the same fixed test split (500
images in the full settings); latency is the median wall time of one single-image
prediction with post-processing (1 torch thread). The target from shared/TARGETS.md: the
YOLO-style detector faster than Faster R-CNN at equal or better mAP@0.5.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="quick settings (seconds, not minutes)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-detection.json"))
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-detection-") as tmp:
        for recipe, (map50_key, map_key) in DETECTORS.items():
            runs = [run_recipe(recipe, quick=args.quick, seed=seed, out=Path(tmp) / f"{recipe}-{seed}",
                               track=False, quiet=True) for seed in args.seeds]
            row = {
                "recipe": recipe, "quick": args.quick, "seeds": args.seeds,
                "map50": mean_std([r.metrics[map50_key] for r in runs]),
                "map": mean_std([r.metrics[map_key] for r in runs]),
                "latency_ms": mean_std([r.metrics["latency_ms"] for r in runs]),
                "train_seconds": mean_std([r.seconds for r in runs]),
            }
            if "test_mask_map50" in runs[0].metrics:
                row["mask_map50"] = mean_std([r.metrics["test_mask_map50"] for r in runs])
            rows.append(row)
            print(json.dumps(row), flush=True)
    yolo, frcnn = rows[0], rows[1]
    summary = {
        "latency_ratio_yolo_over_frcnn": yolo["latency_ms"]["mean"] / frcnn["latency_ms"]["mean"],
        "map50_difference_yolo_minus_frcnn": yolo["map50"]["mean"] - frcnn["map50"]["mean"],
        "target_met": yolo["latency_ms"]["mean"] < frcnn["latency_ms"]["mean"]
        and yolo["map50"]["mean"] >= frcnn["map50"]["mean"],
    }
    print(json.dumps(summary))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
