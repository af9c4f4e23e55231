"""Occlusion map of a 512x512 image (box 64, stride 8: 57 x 57 = 3249 occluded variants), end to
end: batched (jaxnsfw.explain.occlusion_map) against one forward call per box, the way the Clarifai
posts scored each occluded image with its own request.

    python bench/explain_bench.py [--image PATH] [--repeats 3] [--per-box-sample 256]

The whole map is made once, batched, end to end. The comparison times both variants on the same
evenly spaced sample of the boxes, interleaved repeat by repeat, and extrapolates to all boxes (it
says so). Both include the reference preprocessing of every variant (Pillow resize + JPEG round
trip, on host threads for the batched one). Timings on a shared machine are noisy: every repeat is
printed, and the summary uses medians. Writes bench/out/explain_bench.json and
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
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--per-box-sample", type=int, default=256, help="boxes timed both ways, interleaved")
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

    # 1. The whole map, batched, end to end (what `jaxnsfw explain --method occlusion` does).
    full_seconds, (base, scores) = timed(lambda: occluded_scores(rgb, scorer, boxes))
    drop = average_over_boxes(boxes, base - scores, rgb.shape[:2])
    print(f"  batched, all {len(boxes)} boxes, end to end: {full_seconds:.1f} s "
          f"({1000 * full_seconds / len(boxes):.1f} ms per box)")

    # 2. Batched vs one call per box on the same evenly spaced sample, interleaved repeat by repeat
    #    so that load from other processes on the machine hits both alike.
    sample = boxes[np.linspace(0, len(boxes) - 1, min(args.per_box_sample, len(boxes))).astype(int)]
    batched, per_box = [], []
    for repeat in range(args.repeats):
        seconds, (_, batched_scores) = timed(lambda: occluded_scores(rgb, scorer, sample))
        batched.append(1000 * seconds / len(sample))
        seconds, sample_scores = timed(lambda: per_box_scores(rgb, classifier, sample))
        per_box.append(1000 * seconds / len(sample))
        print(f"  repeat {repeat + 1}, {len(sample)} sampled boxes: batched {batched[-1]:.1f} ms per box, "
              f"one call per box {per_box[-1]:.1f} ms per box (ratio {per_box[-1] / batched[-1]:.2f})")
    # Same variants either way: same scores up to batch-size-dependent float32 rounding.
    index = {tuple(b): i for i, b in enumerate(boxes)}
    agreement = float(max(np.abs(sample_scores - scores[[index[tuple(b)] for b in sample]]).max(),
                          np.abs(batched_scores - scores[[index[tuple(b)] for b in sample]]).max()))

    # 3. Where the time goes: host preprocessing, and the forward pass per image by batch size.
    prepare_seconds, _ = timed(lambda: [reference_input(rgb) for _ in range(32)])
    inputs = np.stack([reference_input(rgb)] * 32)
    forward_ms = {}
    for size in (1, 8, 32):
        classifier.forward(inputs[:size])
        seconds, _ = timed(lambda: [classifier.forward(inputs[:size]) for _ in range(32 // size)])
        forward_ms[size] = 1000 * seconds / 32
    print(f"  breakdown: reference preprocessing {1000 * prepare_seconds / 32:.1f} ms per variant (one thread); "
          f"forward pass " + ", ".join(f"batch {k}: {v:.1f}" for k, v in forward_ms.items()) + " ms per image")

    median_batched, median_per_box = statistics.median(batched), statistics.median(per_box)
    print(f"median over {args.repeats} repeats: batched {median_batched:.1f} ms per box, one call per box "
          f"{median_per_box:.1f} ms per box -> {median_per_box / median_batched:.2f}x; extrapolated to all "
          f"{len(boxes)} boxes: {median_batched * len(boxes) / 1000:.0f} s vs {median_per_box * len(boxes) / 1000:.0f} s; "
          f"max |score difference| {agreement:.2g}")

    report = {
        "image": args.image or str(sample_image_path()), "size": args.size, "box": args.box, "stride": args.stride,
        "boxes": len(boxes), "batch_size": args.batch_size, "full_batched_seconds": full_seconds,
        "sample_boxes": len(sample), "batched_ms_per_box": batched, "per_box_ms_per_box": per_box,
        "preprocess_ms_per_variant_one_thread": 1000 * prepare_seconds / 32, "forward_ms_per_image": forward_ms,
        "max_score_difference": agreement, "base_score": base, "cpus": os.cpu_count(),
        "platform": platform.platform(), "jax": jax.__version__,
    }
    (OUT / "explain_bench.json").write_text(json.dumps(report, indent=1))
    np.save(OUT / "explain_bench_occlusion.npy", drop)
    title = f"occlusion, box {args.box} stride {args.stride}, NSFW score {base:.4g}"
    render.save_png(OUT / "explain_bench_occlusion.panel.png", render.panel(rgb, drop, title))
    render.save_png(OUT / "explain_bench_occlusion.overlay.png", render.overlay(rgb, drop))
    print(f"wrote {OUT}/explain_bench.json and explain_bench_occlusion.*")


if __name__ == "__main__":
    main()
