"""Grid placement: every image in exactly one cell, optimal where exact, never worse for the
refinement, and the same layout for the same seed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from atlas_helpers import clustered

from jaxnsfw.atlas import placement
from jaxnsfw.atlas.placement import GridError, PlacementConfig


def every_cell_once(cells: np.ndarray, grid: tuple[int, int]) -> bool:
    rows, cols = grid
    inside = (cells[:, 0] >= 0).all() and (cells[:, 0] < rows).all() and (cells[:, 1] >= 0).all() and \
        (cells[:, 1] < cols).all()
    return bool(inside) and len({tuple(c) for c in cells.tolist()}) == len(cells)


@pytest.mark.parametrize("count, expected", [(1, (1, 1)), (2, (1, 2)), (5, (2, 3)), (1000, (32, 32)),
                                             (1024, (32, 32)), (1025, (32, 33)), (100_000, (316, 317))])
def test_the_default_grid_is_the_smallest_near_square_one_that_holds_every_image(count, expected):
    rows, cols = placement.default_grid(count)
    assert (rows, cols) == expected and rows * cols >= count and cols - rows in (0, 1)


def test_grids_are_written_columns_x_rows_and_checked():
    assert placement.parse_grid("40x30") == (30, 40)
    for bad in ("32", "axb", "0x4", "3x-1"):
        with pytest.raises(GridError):
            placement.parse_grid(bad)
    with pytest.raises(GridError, match="12 cells for 13 images"):
        placement.check_grid((3, 4), 13)


@pytest.mark.parametrize("seed", range(5))
def test_the_exact_assignment_costs_what_lapjv_and_brute_force_find(seed):
    rng = np.random.default_rng(seed)
    grid = (2, 3)
    count = int(rng.integers(3, 7))
    positions = placement.points_on_grid(rng.normal(size=(count, 2)), grid)
    cells = placement.assign_exact(positions, grid)
    assert every_cell_once(cells, grid)
    all_cells = [(r, c) for r in range(grid[0]) for c in range(grid[1])]
    brute = min(placement.assignment_cost(positions, np.array(choice))
                for choice in itertools.permutations(all_cells, count))
    assert placement.assignment_cost(positions, cells) == pytest.approx(brute, rel=1e-12)


@pytest.mark.parametrize("count", [100, 400])
def test_the_exact_assignment_costs_what_scipy_and_lapjv_find_on_random_cases(count):
    lap = pytest.importorskip("lap")
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(count)
    grid = placement.default_grid(count)
    positions = placement.points_on_grid(rng.normal(size=(count, 2)), grid)
    cost = placement.assignment_cost(positions, placement.assign_exact(positions, grid))
    centres = placement.cell_centres(*np.divmod(np.arange(grid[0] * grid[1]), grid[1]))
    matrix = ((positions[:, None, :] - centres[None]) ** 2).sum(axis=2)
    rows, cols = linear_sum_assignment(matrix)
    assert cost == pytest.approx(matrix[rows, cols].sum(), rel=1e-12)
    square = np.vstack([matrix, np.zeros((matrix.shape[1] - count, matrix.shape[1]))])  # lapjv wants it square
    assert cost == pytest.approx(lap.lapjv(square)[0], rel=1e-9)


def test_the_blocked_assignment_places_every_point_once_and_refinement_never_costs_more():
    rng = np.random.default_rng(1)
    count = 3000  # past the exact limit, with empty cells
    grid = placement.default_grid(count)
    positions = placement.points_on_grid(rng.normal(size=(count, 2)) + rng.integers(0, 5, (count, 2)) * 3, grid)
    costs = []
    for passes in (0, 1, 2):
        cells = placement.assign_blocked(positions, grid, block_cells=256, passes=passes)
        assert every_cell_once(cells, grid)
        costs.append(placement.assignment_cost(positions, cells))
    assert costs[0] >= costs[1] >= costs[2]
    exact = placement.assignment_cost(positions, placement.assign_exact(positions, grid))
    assert exact <= costs[2] <= 1.05 * exact  # within 5% of optimal on this case


def test_the_method_is_chosen_by_size_and_named():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 2))
    _, small = placement.assign(points, (8, 8))
    assert small.startswith("exact")
    assert placement.choose_method(placement.EXACT_MAX_CELLS) == "exact"
    assert placement.choose_method(placement.EXACT_MAX_CELLS + 1) == "blocked"
    _, forced = placement.assign(points, (8, 8), PlacementConfig(method="blocked", block_cells=16))
    assert forced.startswith("blocked")


def test_a_layout_is_deterministic_under_its_seed_and_places_every_image_once():
    embeddings = clustered(300, seed=3)
    first = placement.layout(embeddings, config=PlacementConfig(seed=7))
    again = placement.layout(embeddings, config=PlacementConfig(seed=7))
    other = placement.layout(embeddings, config=PlacementConfig(seed=8))
    assert np.array_equal(first.tsne, again.tsne) and np.array_equal(first.cells, again.cells)
    assert not np.array_equal(first.tsne, other.tsne)
    assert first.grid == (17, 18) and every_cell_once(first.cells, first.grid)
    assert set(first.seconds) == {"tsne", "grid"} and first.projection.startswith("openTSNE")


def test_similar_images_end_up_side_by_side():
    embeddings = clustered(400, clusters=4, seed=5)
    placed = placement.layout(embeddings)
    ratio = placement.neighbour_distance_ratio(embeddings, placed.cells, placed.grid)
    shuffled = np.random.default_rng(0).permutation(placed.cells)
    assert ratio < 0.5 < placement.neighbour_distance_ratio(embeddings, shuffled, placed.grid)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_a_handful_of_images_is_laid_out_by_principal_components(count):
    placed = placement.layout(clustered(count, seed=count))
    assert every_cell_once(placed.cells, placed.grid) and placed.projection.startswith("PCA")


def test_perplexity_is_lowered_for_small_collections():
    placed = placement.layout(clustered(40), config=PlacementConfig(perplexity=30))
    assert "lowered from 30" in placed.projection
