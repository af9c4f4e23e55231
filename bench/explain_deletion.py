"""Deletion check of occlusion maps on the shipped model: hiding the 10% of pixels the map ranks
highest must lower the score more than hiding 10% chosen at random.

    python bench/explain_deletion.py [--images ../shared/caffe_reference/images/real] [--threshold 0.05]

For every readable reference image: one occlusion pass (grey boxes of min(H, W)/6 pixels, stride half
a box, on the original image, full reference preprocessing per variant) scored as the NSFW log-odds
m = logit_nsfw - logit_sfw (the NSFW probability is sigmoid(m), so both maps come from the same
variants). Then, on the original image, grey out
  - top:     the 10% of pixels with the largest map values,
  - shuffled: the top 10% of a control map made from the same box drops assigned to random boxes
             (same blockiness and size as the real map, random place; 5 draws),
  - pixels:  10% of pixels drawn uniformly (5 draws),
and score each with the reference preprocessing. Reported separately for
  - probability: only images whose NSFW score is at least --threshold (the reference images are
    all safe; below a few percent the probability hardly moves and a "drop" means nothing),
  - log-odds: all images (the log-odds moves for every image).
Needs ../shared/caffe_reference (not part of CI); slow on CPU. Writes bench/out/explain_deletion.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from jaxnsfw import Classifier, ImageError
from jaxnsfw.explain.geometry import average_over_boxes, box_grid
from jaxnsfw.explain.occlusion import GREY_RGB, occluded_scores
from jaxnsfw.explain.scoring import ImageScorer, reference_input, source_rgb

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO.parent / "shared" / "caffe_reference" / "images" / "real"
OUT = REPO / "bench" / "out"
FRACTION = 0.10
DRAWS = 5


def sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, np.float64)))


def top_pixels(values: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of exactly round(fraction * pixels) pixels with the largest values."""
    flat = values.ravel()
    count = int(round(fraction * flat.size))
    mask = np.zeros(flat.size, bool)
    mask[np.argpartition(-flat, count - 1)[:count]] = True
    return mask.reshape(values.shape)


def hidden(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = rgb.copy()
    out[mask] = GREY_RGB
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=IMAGES)
    parser.add_argument("--threshold", type=float, default=0.05, help="NSFW score for the probability summary")
    parser.add_argument("--limit", type=int, help="only the first N images (a quick look)")
    args = parser.parse_args()

    classifier = Classifier()
    log_odds = lambda inputs: np.diff(classifier.forward(inputs).logits, axis=1)[:, 0]  # noqa: E731
    scorer = ImageScorer(reference_input, log_odds, batch_size=64)
    rng = np.random.default_rng(0)
    rows = []
    paths = sorted(p for p in args.images.iterdir() if p.is_file())[: args.limit]
    started = time.perf_counter()
    for path in paths:
        try:
            rgb = source_rgb(path)
        except ImageError as err:
            print(f"skip {path.name}: {err}")
            continue
        height, width = rgb.shape[:2]
        box = max(4, min(height, width) // 6)
        boxes = box_grid((height, width), box, max(1, box // 2))
        base, scores = occluded_scores(rgb, scorer, boxes)
        maps = {"log_odds": average_over_boxes(boxes, base - scores, (height, width)),
                "probability": average_over_boxes(boxes, sigmoid(base) - sigmoid(scores), (height, width))}
        row = {"image": path.name, "size": [height, width], "boxes": len(boxes), "box": box,
               "base_log_odds": float(base), "base_score": float(sigmoid(base))}
        for kind, values in maps.items():
            masks = {"top": [top_pixels(values, FRACTION)],
                     "shuffled": [top_pixels(average_over_boxes(boxes, rng.permutation(base - scores), (height, width)),
                                             FRACTION) for _ in range(DRAWS)],
                     "pixels": [rng.random((height, width)) < FRACTION for _ in range(DRAWS)]}
            for name, draws in masks.items():
                masked = log_odds(np.stack([reference_input(hidden(rgb, mask)) for mask in draws]))
                drop = base - masked if kind == "log_odds" else sigmoid(base) - sigmoid(masked)
                row[f"{kind}_{name}"] = float(np.mean(drop))
        rows.append(row)
        print(f"{path.name:55s} {height}x{width} {len(boxes):4d} boxes  score {row['base_score']:.4f}  "
              f"drop(prob) top {row['probability_top']:+.4f} shuffled {row['probability_shuffled']:+.4f} "
              f"pixels {row['probability_pixels']:+.4f} | drop(log-odds) top {row['log_odds_top']:+.3f} "
              f"shuffled {row['log_odds_shuffled']:+.3f} pixels {row['log_odds_pixels']:+.3f}", flush=True)

    summary = {}
    for kind, selected in (("probability", [r for r in rows if r["base_score"] >= args.threshold]),
                           ("log_odds", rows)):
        top = np.array([r[f"{kind}_top"] for r in selected])
        entry = {"images": len(selected)}
        for control in ("shuffled", "pixels"):
            other = np.array([r[f"{kind}_{control}"] for r in selected])
            entry[control] = {"mean_drop_top": float(top.mean()), "mean_drop_random": float(other.mean()),
                              "images_top_greater": int((top > other).sum())}
        summary[kind] = entry
        print(f"\n{kind} ({'NSFW score >= %g' % args.threshold if kind == 'probability' else 'all images'}): "
              f"{len(selected)} images")
        for control, numbers in entry.items():
            if control != "images":
                print(f"  top 10% vs random 10% ({control}): mean drop {numbers['mean_drop_top']:+.4g} vs "
                      f"{numbers['mean_drop_random']:+.4g}; top larger on {numbers['images_top_greater']}"
                      f"/{len(selected)} images")
    print(f"\n{len(rows)} images in {time.perf_counter() - started:.0f} s")
    OUT.mkdir(exist_ok=True)
    (OUT / "explain_deletion.json").write_text(json.dumps({"threshold": args.threshold, "fraction": FRACTION,
                                                           "draws": DRAWS, "summary": summary, "images": rows},
                                                          indent=1))


if __name__ == "__main__":
    main()
