"""What --fast decoding buys and costs: CPU time per image and score deviation, on the real images.

    python bench/fast_decoding.py [FOLDER]   # default: ../shared/caffe_reference/images/real

Fast mode lets libjpeg decode JPEGs at 1/2, 1/4 or 1/8 scale in the DCT (never below 256 px) and
lets Pillow box-reduce before the bilinear pass (reducing_gap=3). Times are per-process CPU time,
best of 3, so they are the cost per core whatever else the machine runs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import jaxnsfw
from jaxnsfw import bulk, preprocess
from jaxnsfw.options import ScoringOptions

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FOLDER = REPO.parent / "shared" / "caffe_reference" / "images" / "real"


def cpu_seconds(path: str, fast: bool, repeats: int = 3) -> tuple[float, preprocess.PreparedImage]:
    best, prepared = float("inf"), None
    for _ in range(repeats):
        start = time.process_time()
        prepared = preprocess.prepare(path, ScoringOptions(fast=fast))
        best = min(best, time.process_time() - start)
    return best, prepared


def main(folder: str) -> None:
    classifier = jaxnsfw.Classifier()
    rows = []
    for item in bulk.walk_inputs([folder]):
        try:
            exact_time, exact = cpu_seconds(item.path, fast=False)
            fast_time, fast = cpu_seconds(item.path, fast=True)
        except preprocess.ImageError:
            continue
        scores = classifier.verdicts([exact, fast])
        rows.append((Path(item.path).name, exact_time, fast_time, scores[0].score, scores[1].score))
    names, exact_t, fast_t, exact_s, fast_s = map(np.array, zip(*rows))
    deviation = np.abs(fast_s - exact_s)
    jpeg = np.array([n.lower().endswith((".jpg", ".jpeg")) for n in names])
    print(f"{len(rows)} images from {folder}")
    print("| images | reference CPU ms/img | fast CPU ms/img | speed-up | max abs score change | median |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, mask in (("all", np.ones_like(jpeg)), ("JPEG", jpeg), ("other", ~jpeg)):
        if mask.any():
            print(f"| {label} ({mask.sum()}) | {1e3 * exact_t[mask].mean():.1f} | {1e3 * fast_t[mask].mean():.1f} | "
                  f"{exact_t[mask].sum() / fast_t[mask].sum():.2f}x | {deviation[mask].max():.2e} | "
                  f"{np.median(deviation[mask]):.2e} |")
    worst = np.argsort(-deviation)[:3]
    print("largest changes: " + ", ".join(f"{names[i]} {exact_s[i]:.4f} -> {fast_s[i]:.4f}" for i in worst))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(DEFAULT_FOLDER))
