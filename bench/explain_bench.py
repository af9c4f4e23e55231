"""Occlusion map of a 512x512 image (box 64, stride 8: 57 x 57 = 3249 occluded variants), end to
end: batched (jaxnsfw.explain.occlusion_map) against one forward call per box, the way the Clarifai
posts scored each occluded image with its own request.

    python bench/explain_bench.py [--image PATH] [--repeats 2] [--per-box-sample 128]

The per-box variant is timed on an evenly spaced sample of the boxes and extrapolated to all of them
(it says so). Both variants include the reference preprocessing of every variant (Pillow resize +
JPEG round trip, on host threads for the batched one). Timings on a shared machine are noisy: every
measurement is repeated and all repeats are printed. Writes bench/out/explain_bench.json and
pictures of the map (bench/out/ is git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import numpy as np
from PIL import Image

from jaxnsfw import Classifier
from jaxnsfw.cli import sample_image_path
from jaxnsfw.explain import render
from jaxnsfw.explain.geometry import average_over_boxes, box_grid
from jaxnsfw.explain.occlusion import fill_image, occluded_scores
from jaxnsfw.explain.scoring import classifier_scorer, reference_input, source_rgb

OUT = Path(__file__).resolve().parent / "out"


def square_image(path: str | None, size: int) -> np.ndarray:
    """The image at `path`, or the bundled sample, resized to size x size."""
    rgb = source_rgb(path or sample_image_path())
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BICUBIC))


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def per_box_scores(rgb: np.ndarray, classifier: Classifier, boxes: np.ndarray) -> np.ndarray:
    """One forward call per occluded variant (batch of 1), as a request per box would."""
    filler = fill_image(rgb, "grey", 0)
    scores = []
    for top, left, bottom, right in boxes:
        hidden = rgb.copy()
        hidden[top:bottom, left:right] = filler[top:bottom, left:right]
        scores.append(classifier.forward(reference_input(hidden)[None]).probs[0, 1])
    return np.asarray(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", help="image to resize to 512x512 (default: the bundled chelsea.png)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--box", type=int, default=64)
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64, help="variants prepared and scored per call")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--per-box-sample", type=int, default=128, help="boxes timed one call each")
    args = parser.parse_args()

    OUT.mkdir(exist_ok=True)
    rgb = square_image(args.image, args.size)
    classifier = Classifier()
    scorer = classifier_scorer(classifier, batch_size=args.batch_size)
    boxes = box_grid(rgb.shape[:2], args.box, args.stride)
    print(f"{args.size}x{args.size} image, box {args.box}, stride {args.stride}: {len(boxes)} occluded variants; "
          f"{os.cpu_count()} CPUs, {jax.devices()[0].platform}")

    # Warm-up: compile the batch sizes both variants use (not timed).
    occluded_scores(rgb, scorer, boxes[:40])
    per_box_scores(rgb, classifier, boxes[:2])

    batched = []
    for repeat in range(args.repeats):
        seconds, (base, scores) = timed(lambda: occluded_scores(rgb, scorer, boxes))
        drop = average_over_boxes(boxes, base - scores, rgb.shape[:2])
        batched.append(seconds)
        print(f"  batched, all {len(boxes)} boxes, repeat {repeat + 1}: {seconds:.1f} s "
              f"({1000 * seconds / len(boxes):.1f} ms per box)")

    sample = boxes[np.linspace(0, len(boxes) - 1, min(args.per_box_sample, len(boxes))).astype(int)]
    per_box = []
    for repeat in range(args.repeats):
        seconds, sample_scores = timed(lambda: per_box_scores(rgb, classifier, sample))
        per_box.append(seconds * len(boxes) / len(sample))
        print(f"  one call per box, {len(sample)} sampled boxes, repeat {repeat + 1}: {seconds:.1f} s "
              f"({1000 * seconds / len(sample):.1f} ms per box) -> extrapolated to {len(boxes)}: {per_box[-1]:.0f} s")
    # The two paths score the same variants: same numbers, up to batch-size-dependent float32 rounding.
    index = {tuple(b): i for i, b in enumerate(boxes)}
    agreement = float(np.abs(sample_scores - scores[[index[tuple(b)] for b in sample]]).max())

    prepare_seconds, _ = timed(lambda: [reference_input(rgb) for _ in range(64)])
    inputs = np.stack([reference_input(rgb)] * 64)
    score_seconds, _ = timed(lambda: classifier.forward(inputs))
    print(f"  breakdown: reference preprocessing {1000 * prepare_seconds / 64:.1f} ms per variant on one thread; "
          f"scoring a batch of 64 {1000 * score_seconds / 64:.1f} ms per variant")

    best_batched, best_per_box = min(batched), min(per_box)
    print(f"batched {best_batched:.1f} s (best of {args.repeats}) vs one call per box ~{best_per_box:.0f} s "
          f"(extrapolated, best of {args.repeats}): {best_per_box / best_batched:.1f}x; "
          f"max |score difference| on the sample {agreement:.2g}")

    report = {
        "image": args.image or str(sample_image_path()), "size": args.size, "box": args.box, "stride": args.stride,
        "boxes": len(boxes), "batch_size": args.batch_size, "per_box_sample": len(sample),
        "batched_seconds": batched, "per_box_seconds_extrapolated": per_box, "speedup_best": best_per_box / best_batched,
        "preprocess_ms_per_variant_one_thread": 1000 * prepare_seconds / 64,
        "score_ms_per_variant_batch64": 1000 * score_seconds / 64, "max_score_difference": agreement,
        "base_score": base, "cpus": os.cpu_count(), "platform": platform.platform(), "jax": jax.__version__,
    }
    (OUT / "explain_bench.json").write_text(json.dumps(report, indent=1))
    np.save(OUT / "explain_bench_occlusion.npy", drop)
    title = f"occlusion, box {args.box} stride {args.stride}, NSFW score {base:.4g}"
    render.save_png(OUT / "explain_bench_occlusion.panel.png", render.panel(rgb, drop, title))
    render.save_png(OUT / "explain_bench_occlusion.overlay.png", render.overlay(rgb, drop))
    print(f"wrote {OUT}/explain_bench.json and explain_bench_occlusion.*")


if __name__ == "__main__":
    main()
