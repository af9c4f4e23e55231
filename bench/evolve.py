"""Evolved pictures: the open_nsfw port's DEAP set-up against `jaxnsfw evolve`, in one run.

    python bench/evolve.py [--shape circles] [--count 50] [--population 50] [--generations 200]
                           [--deap-seconds 300] [--seeds 1] [--json FILE]

DEAP baseline, as the port ran it: eaSimple's loop (tournament 3, two-point crossover 0.5, Gaussian
mutation 0.1), each picture drawn with Pillow's ImageDraw and scored on its own through the
reference pipeline (Classifier.score on the PIL image: 256x256 resize, JPEG round trip, network at
batch 1). jaxnsfw: the same algorithm on JAX arrays (--strategy ga), the population drawn in JAX
and scored as one device batch through jaxprep's exact JPEG round trip. Both stop at a reference
score of 0.99 or after --generations; DEAP also after --deap-seconds.

Prints evaluations per second, generations and wall time to reach 0.99, and the final score (the
reference score of the saved PNG) for each, and the ratio of evaluations per second.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaxnsfw.generate.evolution import EvolveConfig, evolve  # noqa: E402
from jaxnsfw.generate.ga import TournamentGA  # noqa: E402
from jaxnsfw.generate.shapes import GEOMETRY_GENES, MAX_RADIUS_FRACTION, Shape, triangle_corners  # noqa: E402

GOAL = 0.99
SIDE = 256


def draw_with_pillow(genes: list[float], shape: Shape, count: int) -> Image.Image:
    """The port's renderer: shapes painted in order with ImageDraw's alpha blending."""
    picture = Image.new("RGB", (SIDE, SIDE), (0, 0, 0))
    draw = ImageDraw.Draw(picture, "RGBA")
    per = shape.genes
    for i in range(count):
        row = [min(max(g, 0.0), 1.0) for g in genes[i * per:(i + 1) * per]]
        geometry, colour = row[:GEOMETRY_GENES[shape]], row[GEOMETRY_GENES[shape]:]
        fill = tuple(int(round(c * 255)) for c in colour)
        if shape is Shape.CIRCLES:
            x, y, r = geometry[0] * SIDE, geometry[1] * SIDE, geometry[2] * SIDE * MAX_RADIUS_FRACTION
            draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
        else:
            corners = np.asarray(triangle_corners(np.asarray(geometry, np.float32))) * SIDE
            draw.polygon([(float(x), float(y)) for x, y in corners], fill=fill)
    return picture


def png_score(classifier, picture: Image.Image) -> float:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return float(classifier.score(buffer.getvalue()))


def run_deap(classifier, shape: Shape, count: int, population: int, generations: int, seconds: float,
             seed: int) -> dict:
    from deap import base, creator, tools
    from deap.algorithms import varAnd

    ga = TournamentGA(population, count * shape.genes)  # the same operator settings
    if not hasattr(creator, "FitnessMax"):
        creator.create("FitnessMax", base.Fitness, weights=(1.0,))
        creator.create("Individual", list, fitness=creator.FitnessMax)
    random.seed(seed)
    toolbox = base.Toolbox()
    toolbox.register("attribute", random.random)
    toolbox.register("individual", tools.initRepeat, creator.Individual, toolbox.attribute, n=count * shape.genes)
    toolbox.register("population", tools.initRepeat, list, toolbox.individual)
    toolbox.register("evaluate", lambda genes: (float(classifier.score(draw_with_pillow(genes, shape, count))),))
    toolbox.register("mate", tools.cxTwoPoint)
    toolbox.register("mutate", tools.mutGaussian, mu=0.0, sigma=ga.mutation_sigma, indpb=ga.gene_mutation_rate)
    toolbox.register("select", tools.selTournament, tournsize=ga.tournament_size)

    classifier.score(draw_with_pillow([0.5] * (count * shape.genes), shape, count))  # compile batch 1 first
    started = time.perf_counter()
    evaluations = 0
    people = toolbox.population(n=population)
    hall = tools.HallOfFame(1)
    generation, reached_at = 0, None
    while True:
        invalid = [person for person in people if not person.fitness.valid]
        for person in invalid:  # eaSimple evaluates only the changed individuals, one at a time
            person.fitness.values = toolbox.evaluate(person)
        evaluations += len(invalid)
        hall.update(people)
        if hall[0].fitness.values[0] >= GOAL and reached_at is None:
            if png_score(classifier, draw_with_pillow(hall[0], shape, count)) >= GOAL:
                reached_at = (generation, time.perf_counter() - started)
                break
        if generation == generations or time.perf_counter() - started > seconds:
            break
        people = varAnd(toolbox.select(people, len(people)), toolbox, ga.crossover_rate, ga.mutation_rate)
        generation += 1
    elapsed = time.perf_counter() - started
    return {"engine": "DEAP + Pillow, one image at a time", "evaluations": evaluations,
            "evaluations_per_s": evaluations / elapsed, "generations": generation, "seconds": elapsed,
            "reached_0.99_after_s": None if reached_at is None else reached_at[1],
            "score": png_score(classifier, draw_with_pillow(hall[0], shape, count))}


def run_jaxnsfw(classifier, shape: Shape, count: int, population: int, generations: int, seed: int) -> dict:
    result = evolve(EvolveConfig(shape=shape, count=count, population=population, generations=generations,
                                 strategy="ga", target=1.0, tolerance=1 - GOAL, seed=seed), classifier)
    return {"engine": "jaxnsfw evolve (JAX drawing, one batch per generation)", "evaluations": result.evaluations,
            "evaluations_per_s": result.evaluations_per_s, "generations": result.generations,
            "seconds": result.seconds, "reached_0.99_after_s": result.seconds if result.reached else None,
            "score": result.score}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="circles", choices=[s.value for s in Shape])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--population", type=int, default=50)
    parser.add_argument("--generations", type=int, default=200)
    parser.add_argument("--deap-seconds", type=float, default=300.0)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()

    import jax

    from jaxnsfw.classifier import Classifier

    shape = Shape(args.shape)
    classifier = Classifier()
    print(f"# {args.count} {shape.value}, population {args.population}, at most {args.generations} generations; "
          f"jax {jax.__version__} on {jax.devices()[0].device_kind}, {platform.node() and 'this machine'}")
    rows = []
    for seed in range(args.seeds):
        rows.append({"seed": seed, **run_jaxnsfw(classifier, shape, args.count, args.population, args.generations,
                                                 seed)})
        print(json.dumps(rows[-1]), flush=True)
        rows.append({"seed": seed, **run_deap(classifier, shape, args.count, args.population, args.generations,
                                              args.deap_seconds, seed)})
        print(json.dumps(rows[-1]), flush=True)
    print()
    print("| engine | seed | evaluations/s | generations | evaluations | to 0.99 (s) | final score |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        reached = "not reached" if row["reached_0.99_after_s"] is None else f"{row['reached_0.99_after_s']:.1f}"
        print(f"| {row['engine']} | {row['seed']} | {row['evaluations_per_s']:.1f} | {row['generations']} | "
              f"{row['evaluations']} | {reached} | {row['score']:.5f} |")
    ours = np.mean([r["evaluations_per_s"] for r in rows if r["engine"].startswith("jaxnsfw")])
    deap = np.mean([r["evaluations_per_s"] for r in rows if r["engine"].startswith("DEAP")])
    print(f"\nevaluations/s ratio jaxnsfw / DEAP: {ours / deap:.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "ratio": ours / deap}, indent=1))


if __name__ == "__main__":
    main()
