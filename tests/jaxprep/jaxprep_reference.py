"""Truth for the jaxprep tests: Pillow itself, and plain scalar-loop NumPy ports of the libjpeg
formulas (a second, independent implementation for stages Pillow cannot show on their own)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from jaxnsfw import pillow_compat, resize_numpy

from conftest import DATA

IMAGES = DATA / "images"


def pillow_resize(rgb: np.ndarray, size=(256, 256)) -> np.ndarray:
    """(H, W, 3) uint8 -> Pillow 13's BILINEAR resize to (height, width) = size: the installed
    Pillow's where its self-check finds it exact for this pass order, else the NumPy port (which
    test_pillow_compat.py proves equal to Pillow 13), so these tests also hold under older Pillows."""
    if pillow_compat.installed_fidelity().resizes_exactly(*rgb.shape[:2], *size):
        return np.asarray(Image.fromarray(rgb).resize(size[::-1], Image.BILINEAR))
    return resize_numpy.resize_bilinear(rgb, size)


def pillow_jpeg_round_trip(image: np.ndarray, **save_options) -> np.ndarray:
    """Save with Pillow (defaults unless options are given) and decode: RGB or, for 2-D arrays, L."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", **save_options)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded)


def committed_rgb_images() -> dict[str, np.ndarray]:
    """The repository's own test images Pillow can decode, as classify_nsfw.py's RGB arrays."""
    images = {}
    for path in sorted(IMAGES.iterdir()):
        try:
            with Image.open(path) as image:
                images[path.name] = np.asarray(image.convert("RGB"))
        except OSError:
            continue  # the deliberately unreadable files
    return images


# --- scalar ports of libjpeg-turbo, written from its formulas with Python ints ----------------------

def _fix(x: float) -> int:
    return int(x * 65536 + 0.5)


def libjpeg_rgb_to_ycc(rgb: np.ndarray) -> np.ndarray:
    """jccolor.c: the rgb_ycc_tab lookup tables, then table sums >> 16."""
    i = np.arange(256, dtype=np.int64)
    half, cbcr = 1 << 15, (128 << 16) + (1 << 15) - 1
    r, g, b = (rgb[..., c].astype(np.int64) for c in range(3))
    y = (_fix(0.299) * i)[r] + (_fix(0.587) * i)[g] + (_fix(0.114) * i + half)[b]
    cb = (-_fix(0.16874) * i)[r] + (-_fix(0.33126) * i)[g] + (_fix(0.5) * i + cbcr)[b]
    cr = (_fix(0.5) * i + cbcr)[r] + (-_fix(0.41869) * i)[g] + (-_fix(0.08131) * i)[b]
    return np.stack([y >> 16, cb >> 16, cr >> 16], axis=-1)


def libjpeg_ycc_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """jdcolor.c: Cr_r_tab, Cb_b_tab, Cr_g_tab, Cb_g_tab, then range_limit."""
    x = np.arange(256, dtype=np.int64) - 128
    half = 1 << 15
    cr_r = (_fix(1.402) * x + half) >> 16
    cb_b = (_fix(1.772) * x + half) >> 16
    cr_g = -_fix(0.71414) * x
    cb_g = -_fix(0.34414) * x + half
    y, cb, cr = (ycc[..., c].astype(np.int64) for c in range(3))
    rgb = np.stack([y + cr_r[cr], y + ((cb_g[cb] + cr_g[cr]) >> 16), y + cb_b[cb]], axis=-1)
    return np.clip(rgb, 0, 255)


def libjpeg_downsample_h2v2(plane: np.ndarray) -> np.ndarray:
    """jcsample.c h2v2_downsample, loop for loop."""
    height, width = plane.shape
    out = np.zeros((height // 2, width // 2), np.int64)
    for row in range(height // 2):
        bias = 1
        for col in range(width // 2):
            block = plane[2 * row:2 * row + 2, 2 * col:2 * col + 2].astype(np.int64)
            out[row, col] = (block.sum() + bias) >> 2
            bias ^= 3
    return out


def libjpeg_upsample_h2v2_fancy(plane: np.ndarray) -> np.ndarray:
    """jdsample.c h2v2_fancy_upsample, loop for loop, with jdmainct's replicated edge rows."""
    plane = plane.astype(np.int64)
    height, width = plane.shape
    out = np.zeros((2 * height, 2 * width), np.int64)
    for row in range(height):
        for v, neighbour in enumerate((max(row - 1, 0), min(row + 1, height - 1))):
            sums = plane[row] * 3 + plane[neighbour]
            line = out[2 * row + v]
            line[0] = (sums[0] * 4 + 8) >> 4
            line[1] = (sums[0] * 3 + sums[min(1, width - 1)] + 7) >> 4
            for col in range(1, width - 1):
                line[2 * col] = (sums[col] * 3 + sums[col - 1] + 8) >> 4
                line[2 * col + 1] = (sums[col] * 3 + sums[col + 1] + 7) >> 4
            if width > 1:
                line[2 * width - 2] = (sums[-1] * 3 + sums[-2] + 8) >> 4
                line[2 * width - 1] = (sums[-1] * 4 + 7) >> 4
    return out


def libjpeg_turbo_quantize(coefficients: np.ndarray, table: np.ndarray) -> np.ndarray:
    """jcdctmgr.c quantize() with compute_reciprocal's divisors, as libjpeg-turbo (and its SIMD)
    computes it: (|c| + correction) * reciprocal >> shift, sign restored."""
    out = np.zeros(coefficients.shape, np.int64)
    for index in np.ndindex(table.shape):
        divisor = int(table[index]) * 8
        bits = divisor.bit_length() - 1
        shift = 16 + bits
        reciprocal, remainder = divmod(1 << shift, divisor)
        correction = divisor // 2
        if remainder == 0:
            reciprocal, shift = reciprocal >> 1, shift - 1
        elif remainder <= divisor // 2:
            correction += 1
        else:
            reciprocal += 1
        c = coefficients[(...,) + index].astype(np.int64)
        magnitude = ((np.abs(c) + correction) * reciprocal) >> shift
        out[(...,) + index] = np.where(c < 0, -magnitude, magnitude)
    return out


def pillow_resample_tables(in_size: int, out_size: int) -> tuple[list[int], list[list[int]]]:
    """Resample.c precompute_coeffs + normalize_coeffs_8bpc for BILINEAR, one output at a time."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = filterscale
    inv = 1.0 / filterscale
    starts, weights = [], []
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        ws = []
        for x in range(xmax):
            t = abs((x + xmin - center + 0.5) * inv)
            ws.append(1.0 - t if t < 1.0 else 0.0)
        total = 0.0
        for w in ws:
            total += w
        if total != 0.0:
            ws = [w / total for w in ws]
        starts.append(xmin)
        weights.append([int(-0.5 + w * (1 << 22)) if w < 0 else int(0.5 + w * (1 << 22)) for w in ws])
    return starts, weights
