"""Where each image goes: t-SNE down to 2-D, then one grid cell per image.

The grid cell of every image is the solution of a linear assignment problem: points (the t-SNE
coordinates, stretched onto the grid) to cells, minimising the total squared distance moved, as the
Clarifai notebook did with Jonker-Volgenant. Solved exactly (scipy's linear_sum_assignment, a
shortest-augmenting-path JV variant) while it is fast; past EXACT_MAX_CELLS the cubic cost of the
exact solver takes over (on this 2-core CPU, under load: 0.2 s at 1,024 cells, 3 s at 2,500, 13 to
17 s at 4,096, so about 15 minutes at 16,384), so a blocked assignment takes its place
(`assign_blocked`):

1. a balanced k-d split of the grid: the region is halved along its longer side and the points are
   split by their coordinate on that side in proportion to the cells each half holds, until every
   block has at most `block_cells` cells (the points stay where t-SNE put them, in rank order);
2. an exact assignment inside every block;
3. refinement passes over windows of the same size shifted by half a window, each an exact
   assignment of the points currently in that window to its cells; a window's current assignment
   is one of its candidates, so the total cost never increases.

Everything here is a pure function of its arrays and the seed; scipy and openTSNE are imported when
used (the `atlas` extra).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

# Exact assignment up to this many cells: about 3 s for 2,500 cells on a loaded 2-core CPU, where
# 4,096 cells take 13 to 17 s (bench/atlas.py) and the blocked assignment 2.7 s within 1% of the cost.
EXACT_MAX_CELLS = 2500
# Cells per block and per refinement window of the blocked assignment: an exact solve of 1,024
# cells takes about 0.1 s.
BLOCK_CELLS = 1024
REFINEMENT_PASSES = 2
# Fewer points than this are laid out by their first two principal components: t-SNE needs a
# perplexity below a third of the points to mean anything.
MIN_TSNE_POINTS = 8
# Dimensions kept by PCA before t-SNE (its neighbour search and the usual practice).
PCA_DIMENSIONS = 50
# openTSNE's result depends on its thread count, and on a loaded machine two threads can be 6x slower
# than one at 1,024 points (they wait on each other; bench/atlas.py). Below this many points t-SNE
# runs on one thread (1.7 s at 1,024): the same seed then gives the same atlas on any machine. From
# here on it uses every core (the same seed gives the same atlas on machines with as many cores).
PARALLEL_TSNE_POINTS = 10_000

EXACT_METHOD = "exact (scipy linear_sum_assignment)"
BLOCKED_METHOD = ("blocked (balanced k-d split into blocks of <= {block} cells, exact per block, "
                  "{passes} shifted refinement passes)")


@dataclass(frozen=True)
class PlacementConfig:
    perplexity: float = 30.0
    seed: int = 0
    method: str = "auto"  # auto | exact | blocked
    block_cells: int = BLOCK_CELLS
    refinement_passes: int = REFINEMENT_PASSES
    threads: int | None = None  # t-SNE threads (default: see PARALLEL_TSNE_POINTS)


@dataclass(frozen=True)
class Layout:
    tsne: np.ndarray  # (N, 2) float64: the 2-D embedding
    cells: np.ndarray  # (N, 2) int: (row, col) of each point, every cell at most once
    grid: tuple[int, int]  # (rows, cols)
    method: str  # the assignment method, in words
    projection: str  # how the 2-D points were made
    seconds: dict[str, float] = field(default_factory=dict)  # per stage


class GridError(ValueError):
    """A grid that cannot hold the points, or a grid text that is not WxH."""


def parse_grid(text: str) -> tuple[int, int]:
    """"WxH" (columns x rows) -> (rows, cols)."""
    parts = text.lower().split("x")
    try:
        cols, rows = (int(p) for p in parts)
    except ValueError:
        raise GridError(f"grid {text!r} is not WxH (columns x rows, e.g. 32x32)") from None
    if cols < 1 or rows < 1:
        raise GridError(f"grid {text!r} needs at least one column and one row")
    return rows, cols


def default_grid(count: int) -> tuple[int, int]:
    """The smallest near-square grid that holds `count` points: ceil(sqrt(N)) columns and as few
    rows as hold the rest (1,024 -> 32 x 32, 1,000 -> 32 x 32, 1,100 -> 34 rows x 33)."""
    cols = max(1, math.ceil(math.sqrt(count)))
    return max(1, math.ceil(count / cols)), cols


def check_grid(grid: tuple[int, int], count: int) -> None:
    rows, cols = grid
    if rows * cols < count:
        raise GridError(f"a {cols}x{rows} grid has {rows * cols} cells for {count} images; "
                        f"give at least {math.ceil(count / rows)}x{rows}, or leave --grid out")


# ---------------------------------------------------------------------------------------------
# 2-D projection


def principal_components(x: np.ndarray, dimensions: int) -> np.ndarray:
    """`x` (N, D) projected on its first `dimensions` principal axes, each axis's sign fixed (its
    largest loading positive) so that the result depends on the data alone."""
    x = np.asarray(x, np.float64)
    centred = x - x.mean(axis=0)
    dimensions = min(dimensions, x.shape[1], max(1, x.shape[0]))
    values, vectors = np.linalg.eigh(centred.T @ centred)  # D x D: cheap for D = 1024 at any N
    axes = vectors[:, np.argsort(values)[::-1][:dimensions]]
    signs = np.sign(axes[np.argmax(np.abs(axes), axis=0), np.arange(axes.shape[1])])
    return centred @ (axes * np.where(signs == 0, 1.0, signs))


def tsne(embeddings: np.ndarray, perplexity: float = 30.0, seed: int = 0,
         threads: int | None = None) -> tuple[np.ndarray, str]:
    """2-D coordinates for (N, D) embeddings, and how they were made: openTSNE (PCA to 50 dimensions
    first, PCA initialisation, its default optimisation) with the perplexity lowered to (N - 1) / 3
    where N is small; the first two principal components below MIN_TSNE_POINTS points."""
    count = len(embeddings)
    if count < MIN_TSNE_POINTS:
        points = np.zeros((count, 2))
        if count > 1:
            pcs = principal_components(embeddings, 2)
            points[:, :pcs.shape[1]] = pcs
        return points, f"PCA (fewer than {MIN_TSNE_POINTS} images: too few for t-SNE)"
    from openTSNE import TSNE

    reduced = principal_components(embeddings, PCA_DIMENSIONS)
    used = min(float(perplexity), (count - 1) / 3.0)
    threads = threads or (1 if count < PARALLEL_TSNE_POINTS else os.cpu_count() or 1)
    model = TSNE(n_components=2, perplexity=used, random_state=seed, n_jobs=threads, initialization="pca",
                 verbose=False)
    points = np.asarray(model.fit(reduced), dtype=np.float64)
    note = "" if used == perplexity else f", lowered from {perplexity:g} for {count} images"
    return points, f"openTSNE (perplexity {used:g}{note}, seed {seed}, {threads} thread{'s' * (threads > 1)})"


# ---------------------------------------------------------------------------------------------
# Grid assignment


def points_on_grid(points: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """2-D points stretched, axis by axis, over the grid's cell centres: (N, 2) as (row, col)
    coordinates from 0.5 to rows - 0.5 and cols - 0.5 (x runs along columns, y along rows)."""
    rows, cols = grid
    points = np.asarray(points, np.float64)
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    unit = (points - low) / span  # 0..1 on each axis
    return np.stack([0.5 + unit[:, 1] * (rows - 1), 0.5 + unit[:, 0] * (cols - 1)], axis=1)


def cell_centres(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return np.stack([rows + 0.5, cols + 0.5], axis=1).astype(np.float64)


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)


def assignment_cost(positions: np.ndarray, cells: np.ndarray) -> float:
    """Total squared distance from each point (grid coordinates) to its cell's centre."""
    return float(((positions - (np.asarray(cells, np.float64) + 0.5)) ** 2).sum())


def _solve(positions: np.ndarray, cell_rc: np.ndarray) -> np.ndarray:
    """Exact: the cell (row of `cell_rc`) of each point, minimising the total squared distance."""
    from scipy.optimize import linear_sum_assignment

    if len(positions) == 0:
        return np.zeros(0, dtype=np.int64)
    _, chosen = linear_sum_assignment(_squared_distances(positions, cell_centres(cell_rc[:, 0], cell_rc[:, 1])))
    return chosen


def assign_exact(positions: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(N, 2) cells (row, col) of the optimal assignment of points in grid coordinates."""
    rows, cols = grid
    every_cell = np.stack(np.divmod(np.arange(rows * cols), cols), axis=1)
    return every_cell[_solve(positions, every_cell)]


def _split(indices: np.ndarray, positions: np.ndarray, region: tuple[int, int, int, int], block_cells: int,
           out: list[tuple[np.ndarray, tuple[int, int, int, int]]]) -> None:
    """Balanced k-d split of `region` (r0, r1, c0, c1) and its points into blocks (see the module)."""
    r0, r1, c0, c1 = region
    cells = (r1 - r0) * (c1 - c0)
    if cells <= block_cells:
        out.append((indices, region))
        return
    along_cols = (c1 - c0) >= (r1 - r0)
    if along_cols:
        middle = (c0 + c1) // 2
        first, second = (r0, r1, c0, middle), (r0, r1, middle, c1)
    else:
        middle = (r0 + r1) // 2
        first, second = (r0, middle, c0, c1), (middle, r1, c0, c1)
    first_cells = (first[1] - first[0]) * (first[3] - first[2])
    count = len(indices)
    take = min(first_cells, max(count - (cells - first_cells), round(count * first_cells / cells)))
    order = indices[np.argsort(positions[indices, 1 if along_cols else 0], kind="stable")]
    _split(order[:take], positions, first, block_cells, out)
    _split(order[take:], positions, second, block_cells, out)


def _region_cells(region: tuple[int, int, int, int]) -> np.ndarray:
    r0, r1, c0, c1 = region
    rr, cc = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
    return np.stack([rr.ravel(), cc.ravel()], axis=1)


def assign_blocked(positions: np.ndarray, grid: tuple[int, int], block_cells: int = BLOCK_CELLS,
                   passes: int = REFINEMENT_PASSES) -> np.ndarray:
    """(N, 2) cells of an approximate assignment: balanced blocks, exact inside each, then shifted
    refinement windows (module docstring). Never worse than the blocks alone."""
    rows, cols = grid
    cells = np.zeros((len(positions), 2), dtype=np.int64)
    blocks: list[tuple[np.ndarray, tuple[int, int, int, int]]] = []
    _split(np.arange(len(positions)), positions, (0, rows, 0, cols), block_cells, blocks)
    for indices, region in blocks:
        region_cells = _region_cells(region)
        cells[indices] = region_cells[_solve(positions[indices], region_cells)]
    occupant = np.full((rows, cols), -1, dtype=np.int64)
    occupant[cells[:, 0], cells[:, 1]] = np.arange(len(positions))
    # Windows about as large as the blocks, square where the grid allows.
    side_rows = max(1, min(rows, int(math.sqrt(block_cells))))
    side_cols = max(1, min(cols, block_cells // side_rows))
    for number in range(passes):
        # Odd passes shift by half a window, so the seams of one pass fall inside the next's windows.
        shift_r, shift_c = (side_rows // 2, side_cols // 2) if number % 2 == 0 else (0, 0)
        for r0 in range(-shift_r, rows, side_rows):
            for c0 in range(-shift_c, cols, side_cols):
                region = (max(r0, 0), min(r0 + side_rows, rows), max(c0, 0), min(c0 + side_cols, cols))
                if region[0] >= region[1] or region[2] >= region[3]:
                    continue
                window = _region_cells(region)
                inside = occupant[window[:, 0], window[:, 1]]
                points = inside[inside >= 0]
                if len(points) < 2:
                    continue
                occupant[window[:, 0], window[:, 1]] = -1
                new = window[_solve(positions[points], window)]
                cells[points] = new
                occupant[new[:, 0], new[:, 1]] = points
    return cells


def choose_method(cell_count: int, method: str = "auto") -> str:
    if method not in ("auto", "exact", "blocked"):
        raise ValueError(f"unknown assignment method {method!r}: auto, exact or blocked")
    if method == "auto":
        return "exact" if cell_count <= EXACT_MAX_CELLS else "blocked"
    return method


def assign(points: np.ndarray, grid: tuple[int, int], config: PlacementConfig = PlacementConfig()
           ) -> tuple[np.ndarray, str]:
    """Cells (N, 2) for 2-D points and the method's name (exact up to EXACT_MAX_CELLS, else blocked)."""
    check_grid(grid, len(points))
    positions = points_on_grid(points, grid)
    if choose_method(grid[0] * grid[1], config.method) == "exact":
        return assign_exact(positions, grid), EXACT_METHOD
    return (assign_blocked(positions, grid, config.block_cells, config.refinement_passes),
            BLOCKED_METHOD.format(block=config.block_cells, passes=config.refinement_passes))


def layout(embeddings: np.ndarray, grid: tuple[int, int] | str | None = None,
           config: PlacementConfig = PlacementConfig()) -> Layout:
    """t-SNE of (N, D) embeddings, then one grid cell per point (default grid: `default_grid(N)`).

    GridError when the grid is too small; ValueError for no embeddings."""
    embeddings = np.asarray(embeddings, np.float32)
    if embeddings.ndim != 2 or len(embeddings) == 0:
        raise ValueError(f"expected (N, D) embeddings with N >= 1, got shape {embeddings.shape}")
    grid = parse_grid(grid) if isinstance(grid, str) else (grid or default_grid(len(embeddings)))
    check_grid(grid, len(embeddings))
    started = time.perf_counter()
    points, projection = tsne(embeddings, config.perplexity, config.seed, config.threads)
    projected = time.perf_counter()
    cells, method = assign(points, grid, config)
    seconds = {"tsne": round(projected - started, 3), "grid": round(time.perf_counter() - projected, 3)}
    return Layout(points, cells, grid, method, projection, seconds)


# ---------------------------------------------------------------------------------------------
# Quality


def neighbour_distance_ratio(embeddings: np.ndarray, cells: np.ndarray, grid: tuple[int, int],
                             seed: int = 0, random_pairs: int = 100_000) -> float:
    """Mean embedding distance between images in side-by-side cells (right and down neighbours),
    divided by the mean distance between random pairs of images: 1 for a random layout, lower the
    better similar images sit together."""
    rows, cols = grid
    x = np.asarray(embeddings, np.float32)
    occupant = np.full((rows, cols), -1, dtype=np.int64)
    occupant[cells[:, 0], cells[:, 1]] = np.arange(len(x))
    pairs = [np.stack([occupant[:, :-1].ravel(), occupant[:, 1:].ravel()], axis=1),
             np.stack([occupant[:-1, :].ravel(), occupant[1:, :].ravel()], axis=1)]
    neighbours = np.concatenate(pairs)
    neighbours = neighbours[(neighbours >= 0).all(axis=1)]
    if len(neighbours) == 0 or len(x) < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    random = rng.integers(0, len(x), size=(random_pairs, 2))
    random = random[random[:, 0] != random[:, 1]]

    def mean_distance(p: np.ndarray) -> float:
        total = sum(float(np.linalg.norm(x[p[i:i + 8192, 0]] - x[p[i:i + 8192, 1]], axis=1).sum())
                    for i in range(0, len(p), 8192))  # in chunks: 100,000 x 1024 pairs at once is 400 MB
        return total / len(p)

    return mean_distance(neighbours) / mean_distance(random)
