"""How far the default float32 path (`Classifier()`) strays from `Classifier(exact=True)` (float64-
accumulated convolutions), over thousands of varied images, and whether float32 scores depend on
the batch size.

    python bench/float32_bound.py                     # 3000 images (~10-15 min on 2 CPU cores)
    python bench/float32_bound.py --count 300 --json /tmp/f32.jsonl

The images are generated deterministically (image i depends only on --seed and i, so a smaller
--count is a prefix of a larger one) from the reference images (tests/data/images, the bundled
chelsea.png and, when present, ../shared/caffe_reference/images), in families taken in turn:
random crops, rescales to any size and aspect ratio, tiny images, very tall or wide images, flat
colours, near-flat colours (+-few levels of noise), low-contrast blends of a source into a flat
colour, uniform and Gaussian noise, gradients, JPEG re-encodings at qualities 1-100, and greyscale
conversions. Each goes through the reference preprocessing (jaxnsfw.preprocess.reference_rgb256:
Pillow's 256x256 resize and JPEG round trip), then Classifier.score_rgb256 for float32 at batch
sizes 1, 8 and 32 and for exact at its default batch size. Sources over 2048 px on a side are
first shrunk to 2048 (thumbnail), to keep the generation cheap.

Printed: markdown tables of |float32 - exact| (max, percentiles 50/99/99.9, how many over 1e-6)
per batch size and per family, the worst images with what made them, and the largest difference
between the float32 scores at different batch sizes.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing it
SHARED_IMAGES = REPO.parent / "shared" / "caffe_reference" / "images"

from jaxnsfw import preprocess  # noqa: E402

FLOAT32_BATCHES = (1, 8, 32)
MAX_SOURCE_SIDE = 2048
FAMILIES = ("crop", "rescale", "tiny", "tall_wide", "flat", "near_flat", "low_contrast", "noise",
            "gradient", "jpeg", "grey")


# ----------------------------------------------------------------------------------------------
# Sources and the generated images


def source_paths() -> list[Path]:
    paths = sorted(p for p in (REPO / "tests" / "data" / "images").iterdir() if p.is_file())
    paths.append(REPO / "jaxnsfw" / "data" / "chelsea.png")
    if SHARED_IMAGES.is_dir():
        paths += sorted(p for p in SHARED_IMAGES.rglob("*") if p.is_file())
    return paths


def load_sources() -> list[tuple[str, Image.Image]]:
    """(name, RGB image) for every readable source (first frame), shrunk to MAX_SOURCE_SIDE."""
    sources = []
    for path in source_paths():
        try:
            with Image.open(path) as image:
                image.load()
                rgb = image.convert("RGB")
        except (OSError, ValueError, SyntaxError, EOFError):
            continue
        if max(rgb.size) > MAX_SOURCE_SIDE:
            rgb.thumbnail((MAX_SOURCE_SIDE, MAX_SOURCE_SIDE), Image.BILINEAR)
        name = path.relative_to(SHARED_IMAGES).as_posix() if SHARED_IMAGES in path.parents else path.name
        sources.append((name, rgb))
    return sources


def _size(rng, low: int, high: int) -> int:
    """Log-uniform integer in [low, high] (just high when high < low)."""
    low = min(low, high)
    return int(round(np.exp(rng.uniform(np.log(low), np.log(high)))))


def _colour(rng) -> tuple[int, int, int]:
    # Half of them anywhere, half near the extremes and mid-grey, where the blob is flattest.
    if rng.random() < 0.5:
        return tuple(int(v) for v in rng.integers(0, 256, 3))
    base = int(rng.choice([0, 1, 127, 128, 254, 255]))
    return tuple(int(np.clip(base + v, 0, 255)) for v in rng.integers(-2, 3, 3))


def generate(index: int, sources, seed: int) -> tuple[str, str, Image.Image]:
    """(family, params, image) of image `index`: depends on (seed, index) only."""
    rng = np.random.default_rng([seed, index])
    family = FAMILIES[index % len(FAMILIES)]
    name, src = sources[int(rng.integers(len(sources)))]
    w, h = src.size
    if family == "crop":
        cw, ch = int(rng.integers(1, w + 1)), int(rng.integers(1, h + 1))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return family, f"{name} box=({x},{y},{x + cw},{y + ch})", src.crop((x, y, x + cw, y + ch))
    if family == "rescale":
        size = (_size(rng, 8, 2000), _size(rng, 8, 2000))
        resample = int(rng.choice([Image.NEAREST, Image.BILINEAR, Image.BICUBIC, Image.LANCZOS]))
        return family, f"{name} size={size} resample={resample}", src.resize(size, resample)
    if family == "tiny":
        size = (int(rng.integers(1, 17)), int(rng.integers(1, 17)))
        return family, f"{name} size={size}", src.resize(size, Image.BILINEAR)
    if family == "tall_wide":
        long, short = _size(rng, 300, 4000), int(rng.integers(1, 9))
        size = (short, long) if rng.random() < 0.5 else (long, short)
        return family, f"{name} size={size}", src.resize(size, Image.BILINEAR)
    if family == "flat":
        size, colour = (_size(rng, 1, 1024), _size(rng, 1, 1024)), _colour(rng)
        return family, f"size={size} rgb={colour}", Image.new("RGB", size, colour)
    if family == "near_flat":
        size, colour, amplitude = (_size(rng, 16, 800), _size(rng, 16, 800)), _colour(rng), int(rng.integers(1, 4))
        noise = rng.integers(-amplitude, amplitude + 1, (size[1], size[0], 3))
        pixels = np.clip(np.asarray(colour) + noise, 0, 255).astype(np.uint8)
        return family, f"size={size} rgb={colour} +-{amplitude}", Image.fromarray(pixels)
    if family == "low_contrast":
        alpha, colour = float(np.exp(rng.uniform(np.log(0.005), np.log(0.3)))), _colour(rng)
        flat = Image.new("RGB", src.size, colour)
        return family, f"{name} alpha={alpha:.4f} rgb={colour}", Image.blend(flat, src, alpha)
    if family == "noise":
        size = (_size(rng, 8, 1024), _size(rng, 8, 1024))
        if rng.random() < 0.5:
            pixels = rng.integers(0, 256, (size[1], size[0], 3))
            params = f"size={size} uniform"
        else:
            colour, sigma = _colour(rng), float(rng.uniform(1, 60))
            pixels = np.asarray(colour) + rng.normal(0, sigma, (size[1], size[0], 3))
            params = f"size={size} gauss rgb={colour} sigma={sigma:.1f}"
        return family, params, Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if family == "gradient":
        size = (_size(rng, 8, 1024), _size(rng, 8, 1024))
        start, end, angle = _colour(rng), _colour(rng), float(rng.uniform(0, np.pi))
        yy, xx = np.mgrid[0:size[1], 0:size[0]]
        t = xx * np.cos(angle) + yy * np.sin(angle)
        t = (t - t.min()) / max(np.ptp(t), 1e-9)
        pixels = np.asarray(start) + (np.asarray(end) - np.asarray(start)) * t[..., None]
        return family, f"size={size} {start}->{end} angle={angle:.2f}", \
            Image.fromarray(np.round(pixels).astype(np.uint8))
    if family == "jpeg":
        quality = int(rng.integers(1, 101))
        image = src
        if rng.random() < 0.5:
            image = src.resize((_size(rng, 32, 1600), _size(rng, 32, 1600)), Image.BILINEAR)
        subsampling = int(rng.choice([0, 1, 2]))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality, subsampling=subsampling)
        decoded = Image.open(io.BytesIO(buffer.getvalue()))
        decoded.load()
        return family, f"{name} size={image.size} q={quality} subsampling={subsampling}", decoded
    if family == "grey":
        image = src.convert("L")
        if rng.random() < 0.5:
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            image = image.crop((x, y, min(w, x + _size(rng, 16, w)), min(h, y + _size(rng, 16, h))))
        return family, f"{name} L size={image.size}", image
    raise AssertionError(family)


# ----------------------------------------------------------------------------------------------
# Statistics and tables


def stats(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {"n": 0}
    return {"n": int(len(values)), "max": float(values.max()), "p50": float(np.percentile(values, 50)),
            "p99": float(np.percentile(values, 99)), "p99.9": float(np.percentile(values, 99.9)),
            "over_1e-6": int((values > 1e-6).sum())}


def table(title: str, rows: list[tuple[str, dict]]) -> str:
    lines = [f"\n{title}\n", "| | n | max | p50 | p99 | p99.9 | > 1e-6 |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, s in rows:
        lines.append(f"| {name} | {s['n']} | {s['max']:.2e} | {s['p50']:.2e} | {s['p99']:.2e} | {s['p99.9']:.2e} "
                     f"| {s['over_1e-6']} |" if s["n"] else f"| {name} | 0 | | | | | |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=3000, help="images generated (default 3000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--block", type=int, default=96, help="images generated and scored at a time")
    parser.add_argument("--worst", type=int, default=12, help="worst images listed")
    parser.add_argument("--json", type=Path, help="also write one JSON line per image here")
    args = parser.parse_args()

    import jax

    from jaxnsfw.classifier import Classifier

    started = time.perf_counter()
    sources = load_sources()
    float32 = {b: Classifier(batch_size=b) for b in FLOAT32_BATCHES}
    exact = Classifier(exact=True)
    print(f"jax {jax.__version__} ({jax.default_backend()}, {len(jax.devices())} device(s)); {len(sources)} "
          f"sources; {args.count} images; float32 batch sizes {FLOAT32_BATCHES}, exact batch "
          f"{exact.max_batch_size}", flush=True)

    families, params, scores = [], [], {b: [] for b in (*FLOAT32_BATCHES, "exact")}
    timings = {b: 0.0 for b in scores}
    timings["generate"] = 0.0
    for block_start in range(0, args.count, args.block):
        t = time.perf_counter()
        rows = []
        for index in range(block_start, min(args.count, block_start + args.block)):
            family, param, image = generate(index, sources, args.seed)
            families.append(family)
            params.append(param)
            rows.append(preprocess.reference_rgb256(image))
        rgb256 = np.stack(rows)
        timings["generate"] += time.perf_counter() - t
        for key, classifier in (*float32.items(), ("exact", exact)):
            t = time.perf_counter()
            scores[key].append(np.asarray(classifier.score_rgb256(rgb256), np.float64))
            timings[key] += time.perf_counter() - t
        done = len(families)
        print(f"  {done}/{args.count} images, {time.perf_counter() - started:.0f} s", flush=True)
    scores = {key: np.concatenate(parts) for key, parts in scores.items()}
    families = np.asarray(families)

    diffs = {b: np.abs(scores[b] - scores["exact"]) for b in FLOAT32_BATCHES}
    worst_over_batches = np.max(np.stack([diffs[b] for b in FLOAT32_BATCHES]), axis=0)
    n = len(families)
    print(f"\n## float32 (Classifier()) vs exact (Classifier(exact=True)) over {n} generated images\n")
    print("seconds: " + ", ".join(f"{key}: {value:.0f}" for key, value in timings.items())
          + f" (ms/img: " + ", ".join(f"{k} {timings[k] / n * 1e3:.1f}" for k in scores) + ")")
    print(table("|float32 - exact| per float32 batch size", [(f"batch {b}", stats(diffs[b])) for b in FLOAT32_BATCHES]
                + [("any batch (max over 1/8/32)", stats(worst_over_batches))]))
    print(table("|float32 - exact| per family (max over batch sizes 1/8/32 per image)",
                [(family, stats(worst_over_batches[families == family])) for family in FAMILIES]))

    print(f"\nworst {args.worst} images (max over batch sizes):\n")
    print("| # | family | params | \\|Δ\\| b1 | b8 | b32 | exact score |")
    print("| ---: | --- | --- | ---: | ---: | ---: | ---: |")
    for index in np.argsort(-worst_over_batches, kind="stable")[:args.worst]:
        print(f"| {index} | {families[index]} | {params[index]} | "
              + " | ".join(f"{diffs[b][index]:.2e}" for b in FLOAT32_BATCHES) + f" | {scores['exact'][index]:.6g} |")

    print("\nfloat32 across batch sizes:\n")
    print("| pair | max \\|Δ\\| | images differing |")
    print("| --- | ---: | ---: |")
    for a, b in ((1, 8), (1, 32), (8, 32)):
        delta = np.abs(scores[a] - scores[b])
        print(f"| batch {a} vs {b} | {delta.max():.2e} | {int((delta > 0).sum())} of {n} |")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")

    if args.json:
        with open(args.json, "w") as handle:
            for i in range(n):
                handle.write(json.dumps({"index": i, "family": str(families[i]), "params": params[i],
                                         **{f"float32_b{b}": scores[b][i] for b in FLOAT32_BATCHES},
                                         "exact": scores["exact"][i]}) + "\n")


if __name__ == "__main__":
    main()
