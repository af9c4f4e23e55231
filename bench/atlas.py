"""The gridded t-SNE atlas, the Clarifai notebook's way against jaxnsfw's, on the same embeddings.

    python bench/atlas.py [--sizes 1024,4096,16384,100000] [--baseline-max 4096] [--seed 0]

Embeddings: 1,024 real ones (the readable reference images of ../shared/caffe_reference, each in
about 14 deterministic variants: crops, flips, quarter turns, brightness and contrast changes, run
through the network; cached in bench/out/atlas_real_embeddings.npz), plus, past 1,024, synthetic
clusters made like them: new cluster centres drawn around the real images' means, each point a
centre plus a real within-image spread (a variant's offset from its image's mean), clipped at 0 as
the global-pool features are.

Per size, one run each:
- notebook: scikit-learn's TSNE on the 1024-d embeddings, normalised to [0, 1], then lapjv (the
  `lap` package) on the squared distances to a [0, 1] grid, as the notebook did; only up to
  --baseline-max points (lapjv needs the full N x N matrix: 2 GB at 16,384, 75 GB at 100,000, and
  its 32 s at 4,096 grow cubically to about 35 minutes at 16,384);
- jaxnsfw: jaxnsfw.atlas.placement (openTSNE, then the exact or the blocked assignment, chosen by
  size); where blocked and the exact solver still runs (up to 4,096 cells), the exact assignment of
  the same t-SNE points too, for its cost and neighbourhood measure.

Quality: the assignment cost (mean squared distance moved, in cells; comparable within a row's
t-SNE) and the neighbour distance ratio (mean embedding distance of side-by-side images over that of
random pairs: 1 is random, lower is better; comparable across methods). Raw results:
bench/results/atlas_2core.json (merged size by size, so an interrupted run keeps what it measured).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
REFERENCE = REPO.parent / "shared" / "caffe_reference" / "images"
CACHE = REPO / "bench" / "out" / "atlas_real_embeddings.npz"
RESULTS = REPO / "bench" / "results" / "atlas_2core.json"
REAL_COUNT = 1024


def variants(image, count: int, rng: np.random.Generator):
    """Deterministic variants of a PIL image: random crops, flips, quarter turns, light changes."""
    from PIL import ImageEnhance, ImageOps

    image = ImageOps.exif_transpose(image).convert("RGB")
    out = [image]
    while len(out) < count:
        w, h = image.size
        scale = rng.uniform(0.45, 1.0)
        cw, ch = max(8, int(w * scale)), max(8, int(h * scale * rng.uniform(0.8, 1.25)))
        cw, ch = min(cw, w), min(ch, h)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        v = image.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            v = ImageOps.mirror(v)
        v = v.rotate(90 * int(rng.integers(0, 4)), expand=True)
        v = ImageEnhance.Brightness(v).enhance(rng.uniform(0.7, 1.3))
        v = ImageEnhance.Contrast(v).enhance(rng.uniform(0.7, 1.3))
        out.append(v)
    return out


def real_embeddings(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(1024, 1024) embeddings of reference image variants and the source image of each (cached)."""
    if CACHE.exists():
        with np.load(CACHE) as npz:
            return npz["embeddings"], npz["source"]
    from PIL import Image

    import jaxnsfw
    from jaxnsfw import preprocess

    files = []
    for path in sorted(p for p in REFERENCE.rglob("*") if p.is_file()):
        try:
            with Image.open(path) as image:
                image.load()
            files.append(path)
        except Exception:  # noqa: BLE001 -- the reference holds a truncated JPEG and a non-image on purpose
            continue
    per_image = -(-REAL_COUNT // len(files))
    rng = np.random.default_rng(seed)
    classifier = jaxnsfw.Classifier(batch_size=8)
    embeddings, source = [], []
    started = time.perf_counter()
    for number, path in enumerate(files):
        with Image.open(path) as image:
            image.seek(0)
            pictures = variants(image.copy(), per_image, rng)
        prepared = [preprocess.prepare(p) for p in pictures]
        for verdict in classifier.verdicts(prepared, embeddings=True):
            embeddings.append(verdict.embedding)
            source.append(number)
        print(f"\r  embedding reference variants: {len(embeddings)} ({time.perf_counter() - started:.0f} s)",
              end="", file=sys.stderr)
    print(file=sys.stderr)
    order = np.random.default_rng(seed).permutation(len(embeddings))[:REAL_COUNT]
    result = np.asarray(embeddings, np.float32)[order], np.asarray(source)[order]
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(CACHE, embeddings=result[0], source=result[1])
    return result


def synthetic_clusters(real: np.ndarray, source: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` synthetic embeddings in clusters like the real ones (module docstring)."""
    rng = np.random.default_rng(seed + 1)
    sources = np.unique(source)
    means = np.stack([real[source == s].mean(axis=0) for s in sources])
    offsets = real - means[np.searchsorted(sources, source)]  # within-image spread, real
    clusters = max(1, count // 40)
    # New centres: a real image's mean moved towards another's and jittered by the spread of means.
    a, b = rng.integers(0, len(means), clusters), rng.integers(0, len(means), clusters)
    mix = rng.uniform(0.0, 0.5, (clusters, 1))
    jitter = rng.normal(size=(clusters, real.shape[1])) * means.std(axis=0) * 0.3
    centres = (1 - mix) * means[a] + mix * means[b] + jitter
    members = rng.integers(0, clusters, count)
    points = centres[members] + offsets[rng.integers(0, len(offsets), count)] * rng.uniform(0.8, 1.2, (count, 1))
    return np.maximum(points, 0.0).astype(np.float32)


def notebook_way(embeddings: np.ndarray, seed: int) -> dict:
    """scikit-learn TSNE on the raw embeddings, then lapjv to a [0, 1] grid (the notebook)."""
    import lap
    from sklearn.manifold import TSNE

    from jaxnsfw.atlas import placement

    count = len(embeddings)
    side = int(round(np.sqrt(count)))
    assert side * side == count, "the notebook's grid is square"
    started = time.perf_counter()
    points = TSNE(n_components=2, perplexity=30, random_state=seed).fit_transform(embeddings)
    projected = time.perf_counter()
    unit = (points - points.min(0)) / (points.max(0) - points.min(0))
    grid = np.dstack(np.meshgrid(np.linspace(0, 1, side), np.linspace(0, 1, side))).reshape(-1, 2)
    cost = ((grid[:, None, :] - unit[None, :, :]) ** 2).sum(axis=2)
    cost = cost * (100000 / cost.max())
    _, _, cell_of_point = lap.lapjv(cost)  # rows are grid points, columns data points
    finished = time.perf_counter()
    cells = np.stack(np.divmod(cell_of_point, side), axis=1)  # meshgrid order: row = y, col = x
    grid_rc = (side, side)
    return {"tsne_s": projected - started, "grid_s": finished - projected, "total_s": finished - started,
            "method": "scikit-learn TSNE + lapjv",
            "cost_per_point": placement.assignment_cost(placement.points_on_grid(points, grid_rc), cells) / count,
            "neighbour_ratio": placement.neighbour_distance_ratio(embeddings, cells, grid_rc, seed)}


def jaxnsfw_way(embeddings: np.ndarray, seed: int) -> dict:
    from jaxnsfw.atlas import placement

    count = len(embeddings)
    grid = placement.default_grid(count)
    started = time.perf_counter()
    points, projection = placement.tsne(embeddings, 30.0, seed)
    projected = time.perf_counter()
    cells, method = placement.assign(points, grid)
    finished = time.perf_counter()
    positions = placement.points_on_grid(points, grid)
    row = {"tsne_s": projected - started, "grid_s": finished - projected, "total_s": finished - started,
           "method": method, "projection": projection,
           "cost_per_point": placement.assignment_cost(positions, cells) / count,
           "neighbour_ratio": placement.neighbour_distance_ratio(embeddings, cells, grid, seed)}
    if not method.startswith("exact") and grid[0] * grid[1] <= 4096:
        exact_started = time.perf_counter()
        exact = placement.assign_exact(positions, grid)
        row["exact"] = {"grid_s": time.perf_counter() - exact_started,
                        "cost_per_point": placement.assignment_cost(positions, exact) / count,
                        "neighbour_ratio": placement.neighbour_distance_ratio(embeddings, exact, grid, seed)}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024,4096,16384,100000")
    parser.add_argument("--baseline-max", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    real, source = real_embeddings(args.seed)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"sizes": {}}
    results["machine"] = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; shared with "
                          f"another job (a second helper's tests) while measuring")
    results["command"] = "python bench/atlas.py " + " ".join(sys.argv[1:])
    for size in (int(s) for s in args.sizes.split(",")):
        embeddings = real[:size] if size <= len(real) else np.concatenate(
            [real, synthetic_clusters(real, source, size - len(real), args.seed)])
        row: dict = {"real": int(min(size, len(real))), "synthetic": int(max(0, size - len(real)))}
        print(f"{size} points ...", file=sys.stderr, flush=True)
        row["jaxnsfw"] = jaxnsfw_way(embeddings, args.seed)
        if size <= args.baseline_max:
            row["notebook"] = notebook_way(embeddings, args.seed)
        results["sizes"][str(size)] = row
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
        print(json.dumps({size: row}), file=sys.stderr, flush=True)
    print_table(results)


def print_table(results: dict) -> None:
    print(f"machine: {results['machine']}")
    print("| points | way | t-SNE s | grid s | total s | assignment | cost / point | neighbour ratio |")
    print("| ---: | --- | ---: | ---: | ---: | --- | ---: | ---: |")
    for size, row in sorted(results["sizes"].items(), key=lambda kv: int(kv[0])):
        label = f"{int(size):,}" + (f" ({row['synthetic']:,} synthetic)" if row["synthetic"] else " (real)")
        for way in ("notebook", "jaxnsfw"):
            r = row.get(way)
            if r is None:
                print(f"| {label} | notebook | not run | | | (lapjv: an N x N matrix, cubic time) | | |")
                continue
            method = r["method"].split(" (")[0]
            print(f"| {label} | {way} | {r['tsne_s']:.1f} | {r['grid_s']:.1f} | {r['total_s']:.1f} | {method} | "
                  f"{r['cost_per_point']:.3f} | {r['neighbour_ratio']:.3f} |")
            if "exact" in r:
                e = r["exact"]
                print(f"| {label} | jaxnsfw, exact on the same t-SNE | | {e['grid_s']:.1f} | | exact | "
                      f"{e['cost_per_point']:.3f} | {e['neighbour_ratio']:.3f} |")


if __name__ == "__main__":
    main()
