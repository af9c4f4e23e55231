"""libjpeg's accurate integer DCTs ("islow": jfdctint.c, jidctint.c) on (..., 8, 8) int32 blocks.

Both are the Loeffler-Ligtenberg-Moschytz factorisation with 13-bit constants (CONST_BITS) and two
extra bits of precision between the passes (PASS1_BITS), descaled with round-half-up shifts. The
forward DCT does rows then columns and leaves its output 8x larger than JPEG's normalised DCT (the
quantizer divides that back out); the inverse does columns then rows, then adds the centre 128 and
clips to 0..255. libjpeg-turbo's x86 SIMD versions (which Pillow's build uses) compute the same
integers; its C inverse wraps out-of-range values through a 1024-entry table where the SIMD one
saturates, which only differs for values beyond -384..639, never reached by decodable 8-bit data.

The smooth versions are the orthonormal DCT-II / DCT-III these approximate (same scaling).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

CONST_BITS = 13
PASS1_BITS = 2
CENTER = 128


def fix(x: float) -> int:
    return int(x * (1 << CONST_BITS) + 0.5)


FIX_0_298631336 = fix(0.298631336)
FIX_0_390180644 = fix(0.390180644)
FIX_0_541196100 = fix(0.541196100)
FIX_0_765366865 = fix(0.765366865)
FIX_0_899976223 = fix(0.899976223)
FIX_1_175875602 = fix(1.175875602)
FIX_1_501321110 = fix(1.501321110)
FIX_1_847759065 = fix(1.847759065)
FIX_1_961570560 = fix(1.961570560)
FIX_2_053119869 = fix(2.053119869)
FIX_2_562915447 = fix(2.562915447)
FIX_3_072711026 = fix(3.072711026)


def descale(x: jax.Array, bits: int) -> jax.Array:
    """libjpeg's DESCALE: x / 2**bits rounded half up (arithmetic shift)."""
    return (x + (1 << (bits - 1))) >> bits


def _odd_rotations(t4, t5, t6, t7):
    """The odd half shared by both DCTs: the four outputs before descaling (jfdctint's naming)."""
    z1, z2, z3, z4 = t4 + t7, t5 + t6, t4 + t6, t5 + t7
    z5 = (z3 + z4) * FIX_1_175875602
    t4, t5 = t4 * FIX_0_298631336, t5 * FIX_2_053119869
    t6, t7 = t6 * FIX_3_072711026, t7 * FIX_1_501321110
    z1, z2 = z1 * -FIX_0_899976223, z2 * -FIX_2_562915447
    z3, z4 = z3 * -FIX_1_961570560 + z5, z4 * -FIX_0_390180644 + z5
    return t4 + z1 + z3, t5 + z2 + z4, t6 + z2 + z3, t7 + z1 + z4


def _fdct_1d(x: jax.Array, first_pass: bool) -> jax.Array:
    """One jpeg_fdct_islow pass along the last axis."""
    d = [x[..., i] for i in range(8)]
    t0, t7 = d[0] + d[7], d[0] - d[7]
    t1, t6 = d[1] + d[6], d[1] - d[6]
    t2, t5 = d[2] + d[5], d[2] - d[5]
    t3, t4 = d[3] + d[4], d[3] - d[4]
    t10, t13, t11, t12 = t0 + t3, t0 - t3, t1 + t2, t1 - t2
    # Pass 1 keeps PASS1_BITS extra bits; pass 2 removes them along with CONST_BITS.
    shift = CONST_BITS - PASS1_BITS if first_pass else CONST_BITS + PASS1_BITS
    if first_pass:
        out0, out4 = (t10 + t11) << PASS1_BITS, (t10 - t11) << PASS1_BITS
    else:
        out0, out4 = descale(t10 + t11, PASS1_BITS), descale(t10 - t11, PASS1_BITS)
    z1 = (t12 + t13) * FIX_0_541196100
    out2 = descale(z1 + t13 * FIX_0_765366865, shift)
    out6 = descale(z1 + t12 * -FIX_1_847759065, shift)
    o7, o5, o3, o1 = _odd_rotations(t4, t5, t6, t7)
    outs = [out0, descale(o1, shift), out2, descale(o3, shift), out4, descale(o5, shift), out6,
            descale(o7, shift)]
    return jnp.stack(outs, axis=-1)


def fdct_islow(samples: jax.Array) -> jax.Array:
    """(..., 8, 8) int32 samples 0..255 -> (..., 8, 8) int32 coefficients, 8x JPEG's scale."""
    rows = _fdct_1d(samples - CENTER, first_pass=True)
    return jnp.swapaxes(_fdct_1d(jnp.swapaxes(rows, -1, -2), first_pass=False), -1, -2)


def _idct_1d(c: jax.Array, first_pass: bool) -> jax.Array:
    """One jpeg_idct_islow pass along the last axis (inputs already dequantized)."""
    d = [c[..., i] for i in range(8)]
    z1 = (d[2] + d[6]) * FIX_0_541196100
    t2 = z1 + d[6] * -FIX_1_847759065
    t3 = z1 + d[2] * FIX_0_765366865
    t0 = (d[0] + d[4]) << CONST_BITS
    t1 = (d[0] - d[4]) << CONST_BITS
    t10, t13, t11, t12 = t0 + t3, t0 - t3, t1 + t2, t1 - t2
    # Odd part: the forward DCT's rotations, fed with coefficients 7, 5, 3, 1.
    o0, o1, o2, o3 = _odd_rotations(d[7], d[5], d[3], d[1])
    shift = CONST_BITS - PASS1_BITS if first_pass else CONST_BITS + PASS1_BITS + 3
    outs = [t10 + o3, t11 + o2, t12 + o1, t13 + o0, t13 - o0, t12 - o1, t11 - o2, t10 - o3]
    return jnp.stack([descale(v, shift) for v in outs], axis=-1)


def idct_islow(coefficients: jax.Array) -> jax.Array:
    """(..., 8, 8) int32 dequantized coefficients -> (..., 8, 8) int32 samples clipped to 0..255."""
    columns = _idct_1d(jnp.swapaxes(coefficients, -1, -2), first_pass=True)
    rows = _idct_1d(jnp.swapaxes(columns, -1, -2), first_pass=False)
    return jnp.clip(rows + CENTER, 0, 255)


def _dct_matrix() -> np.ndarray:
    """Orthonormal 8-point DCT-II: row u is the u-th basis vector."""
    n = np.arange(8)
    basis = np.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / 16)
    scale = np.where(n == 0, math.sqrt(1 / 8), math.sqrt(2 / 8))
    return (basis * scale[:, None]).astype(np.float32)


DCT_MATRIX = _dct_matrix()


def fdct_smooth(samples: jax.Array) -> jax.Array:
    """The real-valued DCT that fdct_islow rounds: orthonormal 2-D DCT of samples - 128, times 8."""
    return 8.0 * (DCT_MATRIX @ (samples - CENTER) @ DCT_MATRIX.T)


def idct_smooth(coefficients: jax.Array) -> jax.Array:
    """The real-valued inverse of JPEG-scaled coefficients (what idct_islow rounds), + 128, clipped."""
    return jnp.clip(DCT_MATRIX.T @ coefficients @ DCT_MATRIX + CENTER, 0.0, 255.0)
