"""Caffe's pooling arithmetic, which differs from the usual 'VALID'/'SAME' conventions.

Caffe rounds the pooled size *up* (ceil), so a window may hang over the bottom/right edge; the
overhang is ignored by MAX and excluded from the divisor of AVE only beyond the padded border.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax


def caffe_pool_output_size(size: int, kernel: int, stride: int, pad: int = 0) -> int:
    """PoolingLayer::Reshape: ceil((size + 2*pad - kernel) / stride) + 1, clipped so that the
    last window starts inside the image or its top/left padding."""
    pooled = int(math.ceil((size + 2 * pad - kernel) / stride)) + 1
    if pad and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


def _overhang(size: int, kernel: int, stride: int, pad: int) -> int:
    """Extra bottom/right padding so that a VALID window sweep yields Caffe's output size."""
    pooled = caffe_pool_output_size(size, kernel, stride, pad)
    return max(0, (pooled - 1) * stride + kernel - (size + 2 * pad))


def caffe_max_pool(x: jnp.ndarray, kernel: int, stride: int, pad: int = 0) -> jnp.ndarray:
    """MAX pooling of NHWC `x` as Caffe computes it (padding never wins the max)."""
    _, h, w, _ = x.shape
    padding = ((0, 0), (pad, pad + _overhang(h, kernel, stride, pad)),
               (pad, pad + _overhang(w, kernel, stride, pad)), (0, 0))
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, kernel, kernel, 1), (1, stride, stride, 1), padding)


def _ave_pool_divisor(size: int, kernel: int, stride: int, pad: int) -> np.ndarray:
    """Per output position, Caffe's pool_size along one axis: the window clipped to the padded
    extent [-pad, size + pad), padding included, overhang beyond it excluded."""
    pooled = caffe_pool_output_size(size, kernel, stride, pad)
    start = np.arange(pooled) * stride - pad
    end = np.minimum(start + kernel, size + pad)
    return (end - start).astype(np.float32)


def caffe_ave_pool(x: jnp.ndarray, kernel: int, stride: int, pad: int = 0) -> jnp.ndarray:
    """AVE pooling of NHWC `x` as Caffe computes it: sum of the in-image values / pool_size."""
    _, h, w, _ = x.shape
    padding = ((0, 0), (pad, pad + _overhang(h, kernel, stride, pad)),
               (pad, pad + _overhang(w, kernel, stride, pad)), (0, 0))
    summed = lax.reduce_window(x, 0.0, lax.add, (1, kernel, kernel, 1), (1, stride, stride, 1), padding)
    divisor = np.outer(_ave_pool_divisor(h, kernel, stride, pad), _ave_pool_divisor(w, kernel, stride, pad))
    return summed / divisor[None, :, :, None]
