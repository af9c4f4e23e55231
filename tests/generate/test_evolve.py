"""`jaxnsfw evolve`: the shapes are drawn as Pillow draws them, the GA's operators do what DEAP's
do, a run is decided by its seed, the score reported is the saved PNG's read back, and bad input
is refused with exit 2. Runs on the shipped model use one population size (4), so they share one
compiled program."""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageDraw

from jaxnsfw import generate
from jaxnsfw.generate.evolution import EvolveConfig, evolve, target_rgb256
from jaxnsfw.generate.evolve_command import add_evolve_command
from jaxnsfw.generate.ga import GAState, TournamentGA
from jaxnsfw.generate.shapes import MAX_RADIUS_FRACTION, Shape, render_population, triangle_corners
from jaxnsfw.generate.strategies import Evolver, Strategy

SIDE = 64
POPULATION = 4


def drawn(genome: list[list[float]], shape: Shape, side: int = SIDE) -> np.ndarray:
    return np.asarray(render_population(jnp.asarray([genome], jnp.float32), shape, side))[0]


def distance_to_circle_edge(side: int, cx: float, cy: float, r: float) -> np.ndarray:
    y, x = np.mgrid[0:side, 0:side] + 0.5
    return np.abs(np.hypot(x - cx, y - cy) - r)


def distance_to_segments(side: int, corners: list[tuple[float, float]]) -> np.ndarray:
    """Distance of each pixel centre to the nearest edge of the closed polygon."""
    y, x = np.mgrid[0:side, 0:side] + 0.5
    distances = []
    for (x0, y0), (x1, y1) in zip(corners, corners[1:] + corners[:1]):
        t = np.clip(((x - x0) * (x1 - x0) + (y - y0) * (y1 - y0)) / ((x1 - x0) ** 2 + (y1 - y0) ** 2), 0, 1)
        distances.append(np.hypot(x - (x0 + t * (x1 - x0)), y - (y0 + t * (y1 - y0))))
    return np.min(distances, axis=0)


def test_a_circle_covers_what_pillow_fills_except_along_its_edge():
    x, y, radius = 0.4, 0.55, 0.6
    ours = drawn([[x, y, radius, 1.0, 0.0, 0.0, 1.0]], Shape.CIRCLES)
    pillow = Image.new("RGB", (SIDE, SIDE))
    cx, cy, r = x * SIDE, y * SIDE, radius * SIDE * MAX_RADIUS_FRACTION
    ImageDraw.Draw(pillow).ellipse([cx - r, cy - r, cx + r, cy + r], fill=(255, 0, 0))
    pillow = np.asarray(pillow)
    differ = (ours != pillow).any(axis=2)
    assert (ours[..., 0] == 255).sum() > 0.9 * np.pi * r * r
    assert differ.sum() < 0.15 * (ours[..., 0] == 255).sum()
    # Rasterization rules differ only for pixels the edge passes through.
    assert distance_to_circle_edge(SIDE, cx, cy, r)[differ].max() <= 1.0


def test_a_triangle_covers_what_pillow_fills_except_along_its_edges():
    # Centre (0.5, 0.45); corners offset by up to a quarter of the canvas: (0.3, 0.25), (0.75, 0.4), (0.4, 0.7).
    geometry = [0.5, 0.45, 0.1, 0.1, 1.0, 0.4, 0.3, 1.0]
    corners = [tuple(corner) for corner in np.asarray(triangle_corners(jnp.asarray(geometry)))]
    np.testing.assert_allclose(corners, [(0.3, 0.25), (0.75, 0.4), (0.4, 0.7)], atol=1e-6)
    ours = drawn([[*geometry, 0.0, 1.0, 0.0, 1.0]], Shape.TRIANGLES)
    pillow = Image.new("RGB", (SIDE, SIDE))
    ImageDraw.Draw(pillow).polygon([(cx * SIDE, cy * SIDE) for cx, cy in corners], fill=(0, 255, 0))
    pillow = np.asarray(pillow)
    differ = (ours != pillow).any(axis=2)
    inside = ours[..., 1] == 255
    assert inside.sum() > 0.9 * 0.5 * abs(np.cross(np.subtract(corners[1], corners[0]),
                                                    np.subtract(corners[2], corners[0]))) * SIDE * SIDE
    # Rasterization rules (Pillow fills the outline too) differ only for pixels the edges pass through.
    assert distance_to_segments(SIDE, [(cx * SIDE, cy * SIDE) for cx, cy in corners])[differ].max() <= 1.0


def test_translucent_shapes_blend_as_pillows_rgba_drawing():
    # A half-transparent blue square-ish triangle pair over a red circle over black.
    genome = [[0.5, 0.5, 1.0, 1.0, 0.0, 0.0, 1.0],  # opaque red circle
              [0.5, 0.5, 0.5, 0.0, 0.0, 1.0, 0.5]]  # half-transparent blue circle inside it
    ours = drawn(genome, Shape.CIRCLES)
    pillow = Image.new("RGB", (SIDE, SIDE))
    draw = ImageDraw.Draw(pillow, "RGBA")
    for x, y, radius, red, green, blue, alpha in genome:
        r = radius * SIDE * MAX_RADIUS_FRACTION
        draw.ellipse([x * SIDE - r, y * SIDE - r, x * SIDE + r, y * SIDE + r],
                     fill=(round(red * 255), round(green * 255), round(blue * 255), round(alpha * 255)))
    centre = SIDE // 2
    # Pillow blends in integers with alpha 128/255; the float blend rounds to within one level.
    assert np.abs(ours[centre, centre].astype(int) - np.asarray(pillow)[centre, centre]).max() <= 1
    assert list(ours[centre, centre]) == [128, 0, 128]
    assert list(ours[0, 0]) == [0, 0, 0]


def test_genes_outside_0_1_are_clipped_when_drawn():
    inside = drawn([[0.5, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]], Shape.CIRCLES)
    outside = drawn([[0.5, 0.5, 7.0, 3.0, 2.0, 1.5, 9.0]], Shape.CIRCLES)
    np.testing.assert_array_equal(inside, outside)


def test_a_triangle_without_area_covers_nothing():
    # Corners on one line through the centre: offsets (-0.2, -0.2), (0, 0), (0.2, 0.2) of the canvas.
    flat = drawn([[0.5, 0.5, 0.1, 0.1, 0.5, 0.5, 0.9, 0.9, 1.0, 1.0, 1.0, 1.0]], Shape.TRIANGLES)
    assert flat.max() == 0


def test_tournament_selection_returns_the_fittest_entrant():
    ga = TournamentGA(population_size=6, num_dims=2, tournament_size=6)
    population = jnp.arange(12, dtype=jnp.float32).reshape(6, 2)
    fitness = jnp.array([5.0, 3.0, 9.0, 0.5, 7.0, 2.0])
    chosen = np.asarray(ga.select(jax.random.key(0), GAState(population, fitness)))
    # With tournaments as large as the population, entrants drawn with replacement: every winner
    # is the best of its draw, never worse than any individual it was drawn against.
    entrant_fitness = {tuple(np.asarray(row)): float(f) for row, f in zip(population, fitness)}
    winners = [entrant_fitness[tuple(row)] for row in chosen]
    assert min(winners) == 0.5 and winners.count(0.5) >= 3


def test_two_point_crossover_swaps_a_middle_segment_between_partners():
    ga = TournamentGA(population_size=2, num_dims=10, crossover_rate=1.0)
    parents = jnp.stack([jnp.zeros(10), jnp.ones(10)])
    first, second = np.asarray(ga.crossover(jax.random.key(3), parents))
    np.testing.assert_array_equal(first + second, np.ones(10))  # each gene came from one parent
    swapped = np.flatnonzero(first == 1)
    assert len(swapped) >= 1 and np.array_equal(swapped, np.arange(swapped[0], swapped[-1] + 1))
    assert first[0] == 0  # the cut points are inside the genome, as DEAP's cxTwoPoint draws them


def test_no_mutation_and_no_crossover_keep_the_selected_genomes():
    ga = TournamentGA(population_size=8, num_dims=5, crossover_rate=0.0, mutation_rate=0.0)
    population = jax.random.uniform(jax.random.key(1), (8, 5))
    offspring = np.asarray(ga.ask(jax.random.key(2), GAState(population, jnp.arange(8.0))))
    rows = {tuple(row) for row in np.asarray(population)}
    assert all(tuple(row) in rows for row in offspring)


def test_imitating_a_picture_of_one_circle_finds_it():
    # The known answer: the target is itself one red circle on black; a one-circle genome that
    # draws it exists, and the GA gets close to it.
    target = drawn([[0.5, 0.5, 0.8, 1.0, 0.0, 0.0, 1.0]], Shape.CIRCLES, 256).astype(np.uint8)
    config = EvolveConfig(count=1, population=32, generations=60, seed=0)
    result = evolve(config, classifier=_NoNetwork(), target_picture=target)
    start = np.sqrt(np.mean(target.astype(float) ** 2))  # a black picture's error
    assert result.picture_rmse < 0.4 * start
    assert result.reached is False and result.target is None


class _NoNetwork:
    """Stands in for the classifier where only the final score needs it."""

    model = None
    variables = None

    def numerics(self):
        import contextlib

        return contextlib.nullcontext()

    def score(self, source):
        return 0.5


@pytest.fixture(scope="module")
def short_run(classifier, tmp_path_factory):
    out = tmp_path_factory.mktemp("evolve") / "circles.png"
    config = EvolveConfig(count=8, population=POPULATION, generations=2, seed=1)
    return config, out, evolve(config, classifier, out=out)


def test_the_reported_score_is_the_saved_png_read_back(classifier, short_run):
    _, out, result = short_run
    assert result.score == pytest.approx(float(classifier.score(str(out))), abs=0)
    # ... and the search saw the same number for that picture through jaxprep's exact JPEG round trip.
    assert result.device_score == pytest.approx(result.score, abs=1e-5)
    with Image.open(out) as saved:
        assert saved.size == (256, 256)
        np.testing.assert_array_equal(np.asarray(saved.convert("RGB")), result.image)
    assert result.evaluations == POPULATION * (result.generations + 1)


def test_the_seed_decides_the_run(classifier, short_run):
    config, _, first = short_run
    again = evolve(config, classifier)
    np.testing.assert_array_equal(again.image, first.image)
    other = evolve(EvolveConfig(count=8, population=POPULATION, generations=2, seed=2), classifier)
    assert not np.array_equal(other.image, first.image)


def test_a_picture_the_reference_pipeline_rejects_is_checked_once(classifier, monkeypatch):
    checked = []

    def rejecting_score(png: bytes) -> float:  # every device score is on target, no reference score is
        checked.append(png)
        return 0.0

    monkeypatch.setattr(classifier, "score", rejecting_score)
    result = evolve(EvolveConfig(count=8, population=POPULATION, generations=6, seed=1, target=0.5, tolerance=0.49),
                    classifier)
    assert not result.reached and result.generations == 6
    assert checked and len(set(checked)) == len(checked)  # a new best picture each time, never one again


def test_every_strategy_runs_and_keeps_its_best(classifier):
    for strategy in ("simple-ga", "sep-cma-es", "snes", "de"):
        result = evolve(EvolveConfig(count=8, population=POPULATION, generations=2, seed=1, strategy=strategy),
                        classifier)
        assert result.generations == 2 and 0 <= result.score <= 1
        assert result.device_score == pytest.approx(result.score, abs=1e-5)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="jaxnsfw")
    add_evolve_command(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["evolve", *argv])


def run(capsys, *argv: str, classifier=None) -> tuple[int, dict | None, str]:
    args = parse(*argv)
    status = args.run(args, classifier=classifier)
    out, err = capsys.readouterr()
    return status, (json.loads(out) if out.strip() else None), err


def test_the_command_prints_one_json_line_and_writes_the_progress_animation(classifier, capsys, tmp_path):
    out, gif = tmp_path / "shapes.png", tmp_path / "progress.gif"
    status, record, err = run(capsys, "--count", "8", "--population", str(POPULATION), "--generations", "3",
                              "--target", "0.5", "--tolerance", "0.49", "--out", str(out), "--progress-gif",
                              str(gif), classifier=classifier)
    assert status == 0, err
    assert {"out", "score", "generations", "evaluations", "evaluations_per_s", "seconds"} <= set(record)
    assert record["reached"] and abs(record["score"] - 0.5) <= 0.49
    with Image.open(gif) as animation:
        assert animation.n_frames >= 1 and animation.size == (256, 256)


@pytest.mark.parametrize("options, message", [
    (["--target", "1.5"], "the target must be an NSFW score from 0 to 1"),
    (["--target", "nan"], "the target must be an NSFW score from 0 to 1"),
    (["--count", "0"], "count must be a whole number of at least 1"),
    (["--population", "2"], "population must be a whole number of at least 4"),
    (["--generations", "-1"], "generations must be a whole number of at least 0"),
    (["--tolerance", "0"], "tolerance must be between 0 and 1"),
    (["--spread", "0"], "the spread must be above 0 and at most 1"),
    (["--spread", "nan"], "the spread must be above 0 and at most 1"),
])
def test_bad_options_exit_2_with_a_message(capsys, tmp_path, options, message):
    status, record, err = run(capsys, "--out", str(tmp_path / "x.png"), *options)
    assert (status, record) == (2, None)
    assert message in err and "Traceback" not in err


def test_bad_files_exit_2_with_a_message(capsys, tmp_path):
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("hello")
    cases = [
        (["--out", str(tmp_path / "x.jpg")], "--out must name a .png file"),
        (["--out", str(tmp_path / "missing" / "x.png")], "does not exist"),
        (["--out", str(tmp_path / "x.png"), "--progress-gif", str(tmp_path / "p.png")], "must name a .gif"),
        (["--out", str(tmp_path / "x.png"), "--target-image", str(not_an_image)], "notes.txt"),
        (["--out", str(tmp_path / "x.png"), "--target-image", str(tmp_path / "absent.jpg")], "absent.jpg"),
    ]
    for options, message in cases:
        status, record, err = run(capsys, *options)
        assert (status, record) == (2, None), options
        assert message in err and "Traceback" not in err, err


def test_a_strategy_whose_extra_is_missing_says_what_to_install(classifier, capsys, tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "evosax" else find_spec(name, *a))
    for options in (["--strategy", "cma-es"], ["--shape", "triangles"]):  # given, or the shape's default
        status, record, err = run(capsys, "--out", str(tmp_path / "x.png"), *options)
        assert (status, record) == (2, None), options
        assert 'pip install "jaxnsfw[evolve]"' in err and "Traceback" not in err
    # Circles default to the GA, which needs no extra.
    status, record, err = run(capsys, "--out", str(tmp_path / "x.png"), "--shape", "circles", "--count", "8",
                              "--population", str(POPULATION), "--generations", "0", classifier=classifier)
    assert status in (0, 1) and record["strategy"] == "ga", err


def test_each_shape_has_its_own_defaults_and_given_settings_win():
    circles, triangles = EvolveConfig(shape="circles"), EvolveConfig(shape="triangles", count=100)
    assert circles.settings() == (Strategy.GA, 50, 200, 0.1)
    assert triangles.settings() == (Strategy.CMA_ES, 100, 200, 0.02)
    given = EvolveConfig(shape="triangles", strategy="ga", population=8, generations=0, spread=0.5)
    assert given.settings() == (Strategy.GA, 8, 0, 0.5)
    with pytest.raises(ValueError, match="population must be a whole number of at least 4"):
        EvolveConfig(shape="triangles", population=3)


@pytest.mark.parametrize("strategy", [Strategy.CMA_ES, Strategy.SNES])
def test_a_distribution_strategy_starts_at_the_best_genome_with_the_given_spread(strategy):
    population = jax.random.uniform(jax.random.key(0), (6, 12))
    fitness = jnp.arange(6.0)[::-1]  # the last genome is the best
    state = Evolver(strategy, 6, 12, spread=0.03).init(jax.random.key(1), population, fitness)
    np.testing.assert_array_equal(state.mean, population[-1])
    np.testing.assert_allclose(state.std, 0.03)


def test_distribution_strategies_also_offer_their_centre_for_evaluation():
    population = jax.random.uniform(jax.random.key(0), (6, 12))
    fitness = jnp.arange(6.0)
    for strategy, centred in ((Strategy.CMA_ES, True), (Strategy.PGPE, True), (Strategy.GA, False),
                              (Strategy.DE, False)):
        evolver = Evolver(strategy, 6, 12)
        state = evolver.init(jax.random.key(1), population, fitness)
        candidates, state = evolver.candidates(jax.random.key(2), state)
        assert evolver.has_centre is centred and candidates.shape == (6 + centred, 12), strategy
        if centred:
            np.testing.assert_array_equal(candidates[-1], state.mean)


def test_a_centred_run_counts_the_centre_among_its_evaluations(classifier):
    result = evolve(EvolveConfig(count=8, population=POPULATION, generations=2, seed=1, strategy="cma-es"),
                    classifier)
    assert result.evaluations == POPULATION + 2 * (POPULATION + 1)
    assert result.device_score == pytest.approx(result.score, abs=1e-5)


def test_a_wallpaper_sized_target_picture_becomes_a_256_canvas(tmp_path):
    wallpaper = tmp_path / "wallpaper.jpg"
    gradient = np.linspace(0, 255, 5120, dtype=np.uint8)
    Image.fromarray(np.broadcast_to(gradient[None, :, None], (2880, 5120, 3)).copy()).save(wallpaper, quality=80)
    picture = target_rgb256(str(wallpaper))
    assert picture.shape == (256, 256, 3) and picture.dtype == np.uint8
    assert picture[:, 0].mean() < 20 and picture[:, -1].mean() > 235


def test_the_package_exports_the_evolve_api():
    assert generate.evolve is evolve and generate.Shape("triangles") is Shape.TRIANGLES
