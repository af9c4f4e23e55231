"""JPEG quantization as libjpeg-turbo does it for `Image.save(format='JPEG')` with Pillow's defaults.

Pillow passes no quality, so jpeg_set_defaults' quality 75 applies to the standard (ITU T.81
Annex K) tables: jpeg_quality_scaling(75) = 50%, each entry (q * 50 + 50) // 100 clamped to 1..255
(force_baseline). The encoder divides the forward DCT's output by 8 * q, rounding half away from
zero; libjpeg-turbo implements that division with a reciprocal multiply (jcdctmgr.c
compute_reciprocal), which tests/jaxprep shows equal to the division for every input it can see.
"""

from __future__ import annotations

import enum

import jax
import jax.numpy as jnp
import numpy as np

from jaxnsfw.jaxprep.surrogate import cubic_round

DEFAULT_QUALITY = 75

# Row-major (natural order), as in jcparam.c.
STD_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
]).reshape(8, 8)
STD_CHROMINANCE = np.full((8, 8), 99)
STD_CHROMINANCE[:4, :4] = np.array([
    17, 18, 24, 47,
    18, 21, 26, 66,
    24, 26, 56, 99,
    47, 66, 99, 99,
]).reshape(4, 4)


def quality_scaling(quality: int) -> int:
    """jpeg_quality_scaling: quality 1..100 -> percentage applied to the standard tables."""
    quality = min(max(quality, 1), 100)
    return 5000 // quality if quality < 50 else 200 - quality * 2


def scaled_table(basic: np.ndarray, quality: int = DEFAULT_QUALITY, force_baseline: bool = True) -> np.ndarray:
    """jpeg_add_quant_table: (8, 8) int32 quantization table for `quality`."""
    table = (basic.astype(np.int64) * quality_scaling(quality) + 50) // 100
    table = np.clip(table, 1, 255 if force_baseline else 32767)
    return table.astype(np.int32)


LUMINANCE_TABLE = scaled_table(STD_LUMINANCE)
CHROMINANCE_TABLE = scaled_table(STD_CHROMINANCE)


def quantize_exact(coefficients: jax.Array, table: jax.Array) -> jax.Array:
    """fdct_islow output (8x scale) -> quantized coefficients: |c| / (8q) rounded half up, signed."""
    divisor = table * 8
    magnitude = (jnp.abs(coefficients) + (divisor >> 1)) // divisor
    return jnp.where(coefficients < 0, -magnitude, magnitude)


class QuantizationGradient(enum.Enum):
    """What the gradient sees of the quantizer's rounding (its value is always the exact one)."""
    STRAIGHT_THROUGH = "straight_through"  # slope 1: JPEG as if lossless
    CUBIC = "cubic"                        # slope 3(x - round x)^2 (Shin & Song 2017)
    NEAR_BOUNDARY = "near_boundary"        # slope exp(-distance to the rounding boundary / scale)


def near_boundary_round(quotient: jax.Array, table: jax.Array, boundary_scale: float) -> jax.Array:
    """The quotient, with a gradient that counts only where a small push can change its rounding.

    A coefficient halfway between two quantization levels flips with the slightest change; one in
    the middle of a step does not move at all, and with a coarse table (high frequencies) most sit
    there. The slope is that of the rounding smoothed by a Laplace kernel of width `boundary_scale`
    in coefficient units, exp(-gap * q / scale) where gap is the distance (in steps) to the nearest
    boundary, normalized to 1 at the boundary so that it matches straight-through there.
    The straight-through estimator gives every coefficient slope 1 instead, and spends the budget
    on pixels whose change JPEG quantizes away."""
    offset = quotient - jax.lax.stop_gradient(jnp.round(quotient))
    gap = jax.lax.stop_gradient(0.5 - jnp.abs(offset))
    slope = jnp.exp(-gap * table / boundary_scale)
    moving = slope * (offset - jax.lax.stop_gradient(offset))  # 0 in value, slope in gradient
    return jax.lax.stop_gradient(quotient) + moving


def quantize_smooth(coefficients: jax.Array, table: jax.Array,
                    gradient: QuantizationGradient = QuantizationGradient.STRAIGHT_THROUGH,
                    boundary_scale: float = 2.0) -> jax.Array:
    """The real quotient coefficient / 8q, whose gradient through the rounding is `gradient`'s.
    (CUBIC's value is the cubic rounding itself, within 1/8 of the quotient.)"""
    quotient = coefficients / (8.0 * table)
    if gradient is QuantizationGradient.CUBIC:
        return cubic_round(quotient)
    if gradient is QuantizationGradient.NEAR_BOUNDARY:
        return near_boundary_round(quotient, table, boundary_scale)
    return quotient


def dequantize(quantized: jax.Array, table: jax.Array) -> jax.Array:
    """The decoder's DEQUANTIZE: coefficient * q (exact in integers, linear in floats)."""
    return quantized * table
