"""libjpeg-turbo's RGB <-> YCbCr conversions (jccolor.c, jdcolor.c), fixed point with 16 fraction bits.

These are JPEG's (JFIF) conversions as libjpeg rounds them, not Pillow's own Image.convert('YCbCr').
The C code reads per-value lookup tables; each table entry is an affine function of the value, so
the same numbers come from evaluating the formulas on whole arrays. (libjpeg-turbo's SIMD versions
are bit-exact with these; tests/jaxprep checks the result against Pillow's JPEG codec.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

SCALEBITS = 16
ONE_HALF = 1 << (SCALEBITS - 1)
CENTER = 128  # CENTERJSAMPLE


def fix(x: float) -> int:
    """libjpeg's FIX(): a constant in 16.16 fixed point, rounded half up."""
    return int(x * (1 << SCALEBITS) + 0.5)


# Encoder (jccolor.c rgb_ycc_convert). Cb and Cr round with 0.5 - epsilon ("ONE_HALF - 1") so that
# the maximum stays 255; Y rounds half up.
RGB_TO_Y = (fix(0.29900), fix(0.58700), fix(0.11400))
RGB_TO_CB = (-fix(0.16874), -fix(0.33126), fix(0.50000))
RGB_TO_CR = (fix(0.50000), -fix(0.41869), -fix(0.08131))
CBCR_BIAS = (CENTER << SCALEBITS) + ONE_HALF - 1

# Decoder (jdcolor.c build_ycc_rgb_table / ycc_rgb_convert).
CR_TO_R, CB_TO_B = fix(1.40200), fix(1.77200)
CR_TO_G, CB_TO_G = -fix(0.71414), -fix(0.34414)


def rgb_to_ycbcr_exact(rgb: jax.Array) -> jax.Array:
    """(..., 3) int32 RGB in 0..255 -> (..., 3) int32 YCbCr in 0..255, as libjpeg's encoder."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = (RGB_TO_Y[0] * r + RGB_TO_Y[1] * g + RGB_TO_Y[2] * b + ONE_HALF) >> SCALEBITS
    cb = (RGB_TO_CB[0] * r + RGB_TO_CB[1] * g + RGB_TO_CB[2] * b + CBCR_BIAS) >> SCALEBITS
    cr = (RGB_TO_CR[0] * r + RGB_TO_CR[1] * g + RGB_TO_CR[2] * b + CBCR_BIAS) >> SCALEBITS
    return jnp.stack([y, cb, cr], axis=-1)


def rgb_to_ycbcr_smooth(rgb: jax.Array) -> jax.Array:
    matrix = np.array([RGB_TO_Y, RGB_TO_CB, RGB_TO_CR], np.float32).T / (1 << SCALEBITS)
    return rgb @ matrix + np.array([0.0, CENTER, CENTER], np.float32)


def ycbcr_to_rgb_exact(ycc: jax.Array) -> jax.Array:
    """(..., 3) int32 YCbCr -> (..., 3) int32 RGB clipped to 0..255, as libjpeg's decoder.

    The tables hold R and B offsets already rounded, and G's two products unrounded with a single
    ONE_HALF, so G rounds once after summing (all shifts are arithmetic, i.e. floor)."""
    y, cb, cr = ycc[..., 0], ycc[..., 1] - CENTER, ycc[..., 2] - CENTER
    r = y + ((CR_TO_R * cr + ONE_HALF) >> SCALEBITS)
    g = y + ((CB_TO_G * cb + ONE_HALF + CR_TO_G * cr) >> SCALEBITS)
    b = y + ((CB_TO_B * cb + ONE_HALF) >> SCALEBITS)
    return jnp.clip(jnp.stack([r, g, b], axis=-1), 0, 255)


def ycbcr_to_rgb_smooth(ycc: jax.Array) -> jax.Array:
    y, cb, cr = ycc[..., 0], ycc[..., 1] - CENTER, ycc[..., 2] - CENTER
    unit = 1.0 / (1 << SCALEBITS)
    r = y + CR_TO_R * unit * cr
    g = y + (CB_TO_G * cb + CR_TO_G * cr) * unit
    b = y + CB_TO_B * unit * cb
    return jnp.clip(jnp.stack([r, g, b], axis=-1), 0.0, 255.0)
