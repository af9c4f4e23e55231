"""Exact integer stages with a smooth stand-in for their gradient.

Every stage of the reference preprocessing is a fixed-point integer computation: Pillow's resize and
libjpeg-turbo's colour conversion, sampling, DCTs and quantization round and clip on every step, so
their true derivative is zero almost everywhere. Each stage here is therefore written twice:

* `exact`: the integer arithmetic of the C code, on int32 arrays (bit-identical to Pillow);
* `smooth`: the same computation on float32 without the rounding (the real-valued map the integer
  code approximates), whose Jacobian stands in for the stage's.

`apply_stage` runs one of them, or both in STRAIGHT_THROUGH mode: the value is the exact one (the
forward pass stays bit-identical to Pillow) and the gradient is the smooth one, evaluated at the
exact input. That is the straight-through estimator applied per stage.
"""

from __future__ import annotations

import enum
from typing import Callable

import jax
import jax.numpy as jnp


class Mode(enum.Enum):
    EXACT = "exact"                        # int32 in, int32 out, bit-identical to Pillow
    STRAIGHT_THROUGH = "straight_through"  # exact values, gradients of the smooth stand-ins
    SMOOTH = "smooth"                      # the smooth stand-ins only (no rounding anywhere)


Stage = Callable[[jax.Array], jax.Array]


def apply_stage(mode: Mode, exact: Stage, smooth: Stage, x: jax.Array) -> jax.Array:
    if mode is Mode.EXACT:
        return exact(x)
    if mode is Mode.SMOOTH:
        return smooth(x)
    # x holds integral values in the forward pass; the exact stage reads them as integers.
    exact_value = exact(jax.lax.stop_gradient(x).astype(jnp.int32)).astype(x.dtype)
    smooth_value = smooth(x)
    # exact + (s - s) is exactly `exact` in the forward pass (s - s == 0 for finite s), while the
    # gradient is that of s. (s + (exact - s) would not be: float rounding can move it off exact.)
    return exact_value + (smooth_value - jax.lax.stop_gradient(smooth_value))


def to_pixels(mode: Mode, image: jax.Array) -> jax.Array:
    """A source image as the stages take it: integers as they are (EXACT; uint8 stays uint8 until
    the first pass gathers it, a quarter of the memory traffic of int32) or float32 (otherwise).

    Float sources with non-integral values are rounded to the uint8 the exact path sees; the
    gradient passes straight through that rounding and the clip."""
    if mode is Mode.EXACT:
        return image if jnp.issubdtype(image.dtype, jnp.integer) else image.astype(jnp.int32)
    image = image.astype(jnp.float32)
    if mode is Mode.SMOOTH:
        return image
    rounded = jnp.clip(jnp.round(image), 0, 255)
    return image + jax.lax.stop_gradient(rounded - image)


def cubic_round(x: jax.Array) -> jax.Array:
    """round(x) + (x - round(x))**3 (Shin & Song 2017): a rounding whose gradient, 3(x - round x)^2,
    is small near the integers it snaps to instead of the straight-through estimator's constant 1."""
    nearest = jax.lax.stop_gradient(jnp.round(x))
    return nearest + (x - nearest) ** 3
