"""`evolve`: pictures made of N coloured shapes, evolved until the network scores them at a target
(or until they look like a target picture).

Each generation the strategy proposes a population (and, if it samples around a centre, that
centre too: strategies.Evolver.candidates), which is drawn and scored as one device batch
(fitness.py); the best genome ever seen is kept. Whenever a new best one's device score is within
the tolerance, its PNG is scored by the reference pipeline, and that score decides success: the
number reported is always the reference score of the saved PNG as it reads back.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnsfw.generate.fitness import CANVAS, Evaluation, best_pixels, picture_fitness, score_fitness
from jaxnsfw.generate.search import aim_logit, check_target, encode_png
from jaxnsfw.generate.shapes import Shape, as_uint8, random_genomes
from jaxnsfw.generate.strategies import DEFAULT_SPREAD, Evolver, Strategy


class ShapeDefaults(NamedTuple):
    strategy: Strategy
    population: int
    generations: int
    spread: float  # the evosax strategies' initial spread, in genes (ga does not use it)


# Every sample of a distribution-based strategy perturbs all of its genes (1,200 for 100 triangles),
# so a wide spread redraws the whole picture and, close to the target, every sample scores below the
# centre. A narrow one reached 0.99 where 0.1 did not (README, "Evolve": how the triangles' defaults
# were found).
TRIANGLE_SPREAD = 0.02

# What EvolveConfig uses for a shape unless told otherwise. Circles: DEAP's GA as the open_nsfw port
# ran it, which reaches 0.99 with 50 of them in a few dozen generations and needs no extra. 100
# triangles: cma-es (evosax's: the evolve extra), which had the best of seven strategies after 60
# generations of 50 on the CPU (0.23, ga 0.04), with the port's population of 100 and a narrow spread.
SHAPE_DEFAULTS = {
    Shape.CIRCLES: ShapeDefaults(Strategy.GA, population=50, generations=200, spread=DEFAULT_SPREAD),
    Shape.TRIANGLES: ShapeDefaults(Strategy.CMA_ES, population=100, generations=200, spread=TRIANGLE_SPREAD),
}


@dataclasses.dataclass(frozen=True)
class EvolveConfig:
    shape: Shape = Shape.CIRCLES
    count: int = 50  # shapes per picture
    # None: the shape's default (SHAPE_DEFAULTS).
    population: int | None = None
    generations: int | None = None
    strategy: Strategy | None = None
    spread: float | None = None
    target: float = 1.0  # the NSFW score to reach (ignored with a target picture)
    tolerance: float = 0.01  # success: |reference score - target| <= tolerance
    seed: int = 0
    background: tuple[int, int, int] = (0, 0, 0)
    gif_frames: int = 50  # at most this many frames in the progress animation

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", Shape(self.shape))
        if self.strategy is not None:
            object.__setattr__(self, "strategy", Strategy(self.strategy))
        check_target(self.target)
        settings = self.settings()
        for name, value, least in (("count", self.count, 1), ("population", settings.population, 4),
                                   ("generations", settings.generations, 0), ("gif_frames", self.gif_frames, 1)):
            if not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be a whole number of at least {least}, got {value!r}")
        if not 0 < self.tolerance < 1:
            raise ValueError(f"tolerance must be between 0 and 1 (exclusive), got {self.tolerance}")
        if not 0 < settings.spread <= 1:  # also refuses NaN
            raise ValueError(f"the spread must be above 0 and at most 1 (genes live in 0..1), got {settings.spread}")

    def settings(self) -> ShapeDefaults:
        """The strategy, population, generations and spread of the run: those given, else the shape's."""
        default = SHAPE_DEFAULTS[self.shape]
        return ShapeDefaults(
            default.strategy if self.strategy is None else self.strategy,
            default.population if self.population is None else self.population,
            default.generations if self.generations is None else self.generations,
            default.spread if self.spread is None else float(self.spread))


@dataclasses.dataclass(frozen=True)
class EvolveResult:
    out: str | None
    score: float  # the reference score of the PNG, as written and read back
    device_score: float | None  # the score the search saw for that picture (None with a target picture)
    generations: int  # generations run
    evaluations: int  # pictures drawn and scored (the initial population included)
    evaluations_per_s: float  # over the generations, after compiling
    seconds: float
    reached: bool  # score within tolerance of target (always False with a target picture)
    shape: str
    count: int
    strategy: str
    population: int
    spread: float
    seed: int
    target: float | None  # None with a target picture
    picture_rmse: float | None  # root mean squared error against the target picture (0..255), if any
    image: np.ndarray = dataclasses.field(repr=False)  # (256, 256, 3) uint8: what the PNG holds
    frames: list[np.ndarray] = dataclasses.field(repr=False)  # the best picture every few generations

    def record(self) -> dict:
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                if field.name not in ("image", "frames")}


Progress = Callable[[int, float], None]  # (generation, best score or picture RMSE) after each generation


def evolve(config: EvolveConfig = EvolveConfig(), classifier=None, *, target_picture: np.ndarray | None = None,
           out: str | os.PathLike | None = None, progress: Progress | None = None) -> EvolveResult:
    """Evolve a picture of `config.count` shapes. `target_picture`: a (256, 256, 3) uint8 image to
    imitate instead of a score (`target_rgb256` makes one from any image source). `out`: write the
    PNG there; the score reported is that of the file read back."""
    started = time.perf_counter()
    if classifier is None:
        from jaxnsfw.classifier import default_classifier

        classifier = default_classifier()
    shape, count = config.shape, config.count
    strategy, population, generations, spread = config.settings()
    evolver = Evolver(strategy, population, count * shape.genes, spread)
    if target_picture is None:
        evaluate_scores = score_fitness(classifier.model, shape, count, config.background)
        aim = jnp.float32(aim_logit(config.target, config.tolerance))

        def evaluate(genomes) -> Evaluation:
            return evaluate_scores(classifier.variables, genomes, aim)
    else:
        evaluate_picture = picture_fitness(shape, count, config.background)
        target = jnp.asarray(target_picture, jnp.float32)

        def evaluate(genomes) -> Evaluation:
            return evaluate_picture(genomes, target)

    draw = best_pixels(shape, count, config.background)
    frame_every = max(1, generations // config.gif_frames)

    def reference_score(image: np.ndarray) -> float:
        return float(classifier.score(encode_png(image)))

    with classifier.numerics():
        key = jax.random.key(config.seed)
        key, key_start, key_init = jax.random.split(key, 3)
        genomes = random_genomes(key_start, population, count, shape).reshape(population, -1)
        if classifier.variables is not None:
            # Where the network's outputs live (the classifier's mesh): starting the population there
            # keeps the second generation from compiling every program again for another placement.
            genomes = jax.device_put(genomes, jax.tree.leaves(classifier.variables)[0].sharding)
        evaluation = evaluate(genomes)
        state = evolver.init(key_init, genomes, evaluation.fitness)
        candidates, tell = jax.jit(evolver.candidates), jax.jit(evolver.tell)
        best_index = int(jnp.argmin(evaluation.fitness))
        best = (float(evaluation.fitness[best_index]), genomes[best_index], float(evaluation.score[best_index]))
        image = as_uint8(draw(best[1]))
        evaluations = population
        # Compile a generation's programs too (all pure: the state is not advanced), so that
        # evaluations per second measure generations, not compiling.
        warm_up = candidates(key, state)[0]
        if evolver.has_centre:  # one picture more than the initial population: another batch shape
            jax.block_until_ready(evaluate(warm_up).fitness)
        jax.block_until_ready(tell(key, warm_up[:population], evaluation.fitness, state))
        loop_started = time.perf_counter()
        frames = [image]
        # (picture, its reference score) of the last check: a best picture whose device score is on
        # target but whose reference score is not is checked once, not again every generation.
        checked: tuple[np.ndarray, float] | None = None
        # Reference checks (host preprocessing, and the first one compiles the batch-1 network) are
        # kept out of evaluations per second, which measure the generations.
        checking_seconds = 0.0
        generation = 0
        while True:
            if target_picture is None and abs(best[2] - config.target) <= config.tolerance and (
                    checked is None or checked[0] is not image):
                check_started = time.perf_counter()
                checked = (image, reference_score(image))
                checking_seconds += time.perf_counter() - check_started
                if abs(checked[1] - config.target) <= config.tolerance:
                    break
            if generation == generations:
                break
            key, key_ask, key_tell = jax.random.split(key, 3)
            genomes, state = candidates(key_ask, state)
            evaluation = evaluate(genomes)
            state = tell(key_tell, genomes[:population], evaluation.fitness[:population], state)
            generation += 1
            evaluations += len(genomes)
            index = int(jnp.argmin(evaluation.fitness))
            if float(evaluation.fitness[index]) < best[0]:
                best = (float(evaluation.fitness[index]), genomes[index], float(evaluation.score[index]))
                image = as_uint8(draw(best[1]))
            if generation % frame_every == 0:
                frames.append(image)
            if progress is not None:
                progress(generation, best[2] if target_picture is None else float(np.sqrt(best[0])))
        loop_seconds = time.perf_counter() - loop_started - checking_seconds
    if frames[-1] is not image:
        frames.append(image)
    png = encode_png(image)
    if out is not None:
        with open(out, "wb") as file:
            file.write(png)
        score = float(classifier.score(os.fspath(out)))  # what a reader of the file gets: nsfw_score(out)
    else:
        score = checked[1] if checked is not None and checked[0] is image else float(classifier.score(png))
    rmse = None
    if target_picture is not None:
        rmse = float(np.sqrt(np.mean((image.astype(np.float64) - target_picture.astype(np.float64)) ** 2)))
    return EvolveResult(
        out=None if out is None else os.fspath(out), score=score,
        device_score=None if target_picture is not None else best[2], generations=generation, evaluations=evaluations,
        evaluations_per_s=((evaluations - population) / loop_seconds) if generation and loop_seconds > 0 else 0.0,
        seconds=time.perf_counter() - started,
        reached=target_picture is None and abs(score - config.target) <= config.tolerance,
        shape=shape.value, count=count, strategy=strategy.value, population=population,
        spread=spread, seed=config.seed, target=None if target_picture is not None else config.target,
        picture_rmse=rmse,
        image=image, frames=frames)


def target_rgb256(source) -> np.ndarray:
    """The 256x256 picture the reference pipeline resizes `source` (path, bytes, PIL image...) to,
    before its JPEG round trip: what `--target-image` asks the shapes to imitate. Large JPEGs are
    reduced while decoding (draft mode: only a picture to imitate, no score, comes of it), so a
    5120x2880 wallpaper costs a few megabytes; ImageError for an unreadable source."""
    from jaxnsfw import pillow_compat
    from jaxnsfw.preprocess import open_image

    with open_image(source, draft_size=(CANVAS, CANVAS)) as image:
        return np.asarray(pillow_compat.resize_bilinear(image.convert("RGB"), (CANVAS, CANVAS)))
