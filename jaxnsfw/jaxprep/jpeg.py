"""The JPEG round trip of `Image.save(buffer, 'JPEG')` + `Image.open(buffer)` in Pillow 13 with its
libjpeg-turbo: baseline, quality 75, YCbCr 4:2:0, islow DCTs, fancy upsampling. Entropy coding is
lossless and left out; everything that changes pixels is here, stage by stage:

    RGB -> YCbCr (jccolor) -> Cb, Cr 2x2 downsampling (jcsample h2v2) -> 8x8 blocks
    -> forward DCT (jfdctint) -> quantize (jcdctmgr) | dequantize -> inverse DCT (jidctint)
    -> Cb, Cr fancy upsampling (jdsample h2v2) -> YCbCr -> RGB (jdcolor)

Images must be a whole number of 16x16 MCUs (the pipeline's are 256x256), so no edge expansion is
needed. Each stage is exact on int32 and has a smooth stand-in for gradients (see surrogate.py).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from jaxnsfw.jaxprep import colour, dct, quantize, sampling
from jaxnsfw.jaxprep.surrogate import Mode, apply_stage


@dataclasses.dataclass(frozen=True)
class JpegConfig:
    quality: int = quantize.DEFAULT_QUALITY
    # Gradient of the quantizer's rounding in STRAIGHT_THROUGH/SMOOTH modes (quantize.py). The
    # straight-through default keeps gradients those of a lossless JPEG; `inverse` asks for
    # NEAR_BOUNDARY, which reaches its targets within small budgets far more often.
    quantization_gradient: quantize.QuantizationGradient = quantize.QuantizationGradient.STRAIGHT_THROUGH
    boundary_scale: float = 2.0  # NEAR_BOUNDARY's width, in DCT coefficient units


def to_blocks(plane: jax.Array) -> jax.Array:
    """(..., H, W) -> (..., H/8, W/8, 8, 8)."""
    *lead, height, width = plane.shape
    blocks = plane.reshape(*lead, height // 8, 8, width // 8, 8)
    return jnp.swapaxes(blocks, -3, -2)


def from_blocks(blocks: jax.Array) -> jax.Array:
    *lead, rows, cols, _, _ = blocks.shape
    return jnp.swapaxes(blocks, -3, -2).reshape(*lead, rows * 8, cols * 8)


def _codec(mode: Mode, plane: jax.Array, table: jax.Array, config: JpegConfig) -> jax.Array:
    """Encode and decode one component plane: DCT, quantize | dequantize, inverse DCT."""
    encode = (lambda x: quantize.quantize_exact(dct.fdct_islow(to_blocks(x)), table),
              lambda x: quantize.quantize_smooth(dct.fdct_smooth(to_blocks(x)), table,
                                                       config.quantization_gradient, config.boundary_scale))
    decode = (lambda q: from_blocks(dct.idct_islow(quantize.dequantize(q, table))),
              lambda q: from_blocks(dct.idct_smooth(quantize.dequantize(q, table))))
    return apply_stage(mode, *decode, apply_stage(mode, *encode, plane))


def jpeg_round_trip(rgb: jax.Array, mode: Mode = Mode.EXACT, config: JpegConfig = JpegConfig()) -> jax.Array:
    """(..., H, W, 3) RGB pixels (int32 in EXACT mode, float32 otherwise) -> the same after a
    Pillow JPEG save and load. H and W must be multiples of 16."""
    height, width = rgb.shape[-3:-1]
    if height % 16 or width % 16:
        raise ValueError(f"JPEG round trip of {height}x{width}: only whole 16x16 MCUs are supported")
    luma_table = jnp.asarray(quantize.scaled_table(quantize.STD_LUMINANCE, config.quality))
    chroma_table = jnp.asarray(quantize.scaled_table(quantize.STD_CHROMINANCE, config.quality))

    ycc = apply_stage(mode, colour.rgb_to_ycbcr_exact, colour.rgb_to_ycbcr_smooth, rgb)
    y, cb, cr = ycc[..., 0], ycc[..., 1], ycc[..., 2]
    downsample = functools.partial(apply_stage, mode, sampling.downsample_h2v2_exact,
                                   sampling.downsample_h2v2_smooth)
    upsample = functools.partial(apply_stage, mode, sampling.upsample_h2v2_fancy_exact,
                                 sampling.upsample_h2v2_fancy_smooth)
    y = _codec(mode, y, luma_table, config)
    cb = upsample(_codec(mode, downsample(cb), chroma_table, config))
    cr = upsample(_codec(mode, downsample(cr), chroma_table, config))
    return apply_stage(mode, colour.ycbcr_to_rgb_exact, colour.ycbcr_to_rgb_smooth,
                       jnp.stack([y, cb, cr], axis=-1))
