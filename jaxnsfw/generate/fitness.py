"""How good a population of genomes is, as one device batch: drawn (shapes.py), then either scored
through the exact JPEG round trip and the network, or compared with a target picture.

The canvas is 256x256, the size the reference pipeline resizes to, so the reference resize of the
saved PNG is the identity and the device sees exactly what `nsfw_score(OUT.png)` sees: the JPEG
round trip (jaxprep, bit-exact), the centre crop and the network.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxnsfw.constants import RESIZE
from jaxnsfw.generate.shapes import Shape, render_population
from jaxnsfw.jaxprep.jpeg import jpeg_round_trip
from jaxnsfw.jaxprep.pipeline import caffe_input_from_rgb256

CANVAS = RESIZE[0]


class Evaluation(NamedTuple):
    fitness: jax.Array  # (P,), lower is better
    score: jax.Array  # (P,) NSFW scores; NaN where the fitness did not need the network


def nsfw_margins(model, variables, pixels: jax.Array) -> jax.Array:
    """logit(NSFW score) of (P, 256, 256, 3) int32 images: 1 - p underflows for confident
    images, the difference of the two logits does not."""
    logits = model.apply(variables, caffe_input_from_rgb256(jpeg_round_trip(pixels))).logits
    return logits[:, 1] - logits[:, 0]


@functools.cache
def score_fitness(model, shape: Shape, count: int, background: tuple[int, int, int]) -> Callable[..., Evaluation]:
    """jitted (variables, flat genomes (P, count*G), aim logit) -> Evaluation: squared distance of
    each image's logit from the aim. Built once per model and shape; compiled once per population."""

    def evaluate(variables, genomes, aim):
        pixels = render_population(genomes.reshape(len(genomes), count, shape.genes), shape, CANVAS, background)
        margins = nsfw_margins(model, variables, pixels)
        return Evaluation((margins - aim) ** 2, jax.nn.sigmoid(margins))

    return jax.jit(evaluate)


@functools.cache
def picture_fitness(shape: Shape, count: int, background: tuple[int, int, int]) -> Callable[..., Evaluation]:
    """jitted (flat genomes, target (256, 256, 3) float32) -> Evaluation: mean squared pixel error
    against the target (no network: the score of the result is taken once, at the end)."""

    def evaluate(genomes, target):
        pixels = render_population(genomes.reshape(len(genomes), count, shape.genes), shape, CANVAS, background)
        error = jnp.mean((pixels.astype(jnp.float32) - target) ** 2, axis=(1, 2, 3))
        return Evaluation(error, jnp.full(len(genomes), jnp.nan))

    return jax.jit(evaluate)


@functools.cache
def best_pixels(shape: Shape, count: int, background: tuple[int, int, int]) -> Callable[[jax.Array], jax.Array]:
    """jitted flat genome (count*G,) -> its (256, 256, 3) int32 picture."""
    return jax.jit(lambda genome: render_population(genome.reshape(1, count, shape.genes), shape, CANVAS,
                                                    background)[0])
