"""Caffe blobs -> Flax variables, one function per parameterized layer type.

Each returns {(collection, module, variable): array}; shapes are checked against the Flax
module afterwards, by the caller, so a wrong shape is reported against the layer that made it.
"""

from __future__ import annotations

import numpy as np

from convert.errors import ConversionError


def _expect_blobs(layer_name: str, layer_type: str, blobs: list[np.ndarray], count: int, what: str) -> None:
    if len(blobs) != count:
        raise ConversionError(f"caffemodel layer '{layer_name}' ({layer_type}) has {len(blobs)} blobs; "
                              f"the prototxt needs {count} ({what})")


def convolution(name: str, blobs: list[np.ndarray], bias_term: bool) -> dict:
    """Weights OIHW -> HWIO (Flax's kernel layout); bias as is."""
    _expect_blobs(name, "Convolution", blobs, 2 if bias_term else 1, "weights, bias" if bias_term else "weights")
    if blobs[0].ndim != 4:
        raise ConversionError(f"caffemodel layer '{name}': weights have shape {blobs[0].shape}, expected 4-D OIHW")
    out = {("params", name, "kernel"): np.transpose(blobs[0], (2, 3, 1, 0))}
    if bias_term:
        out[("params", name, "bias")] = blobs[1].reshape(-1)
    return out


def batch_norm(name: str, blobs: list[np.ndarray]) -> dict:
    """Caffe's stored statistics are running sums; BatchNormLayer divides them by blobs[2][0]
    as a multiplication by its float32 reciprocal (0 when the factor is 0), which we repeat
    bit for bit so that the Flax model sees the same mean and variance Caffe does."""
    _expect_blobs(name, "BatchNorm", blobs, 3, "mean, variance, moving-average factor")
    factor = blobs[2].reshape(-1)
    if factor.size != 1:
        raise ConversionError(f"caffemodel layer '{name}': moving-average factor has shape {blobs[2].shape}, "
                              "expected one value")
    scale = np.float32(0) if factor[0] == 0 else np.float32(1) / np.float32(factor[0])
    return {("batch_stats", name, "mean"): blobs[0].reshape(-1) * scale,
            ("batch_stats", name, "var"): blobs[1].reshape(-1) * scale}


def scale(name: str, blobs: list[np.ndarray], bias_term: bool) -> dict:
    if not bias_term:
        raise ConversionError(f"prototxt layer '{name}': Scale without bias_term is not supported")
    _expect_blobs(name, "Scale", blobs, 2, "gamma, beta")
    return {("params", name, "scale"): blobs[0].reshape(-1), ("params", name, "bias"): blobs[1].reshape(-1)}


def inner_product(name: str, blobs: list[np.ndarray], bias_term: bool) -> dict:
    """Weights (out, in) -> Dense kernel (in, out). `in` is in Caffe's NCHW flatten order, which
    the Flax model reproduces by flattening its NHWC features as NCHW."""
    _expect_blobs(name, "InnerProduct", blobs, 2 if bias_term else 1, "weights, bias" if bias_term else "weights")
    weights = blobs[0]
    if weights.ndim == 4 and weights.shape[0] == weights.shape[1] == 1:  # legacy (1, 1, out, in) blobs
        weights = weights[0, 0]
    if weights.ndim != 2:
        raise ConversionError(f"caffemodel layer '{name}': weights have shape {blobs[0].shape}, expected (out, in)")
    out = {("params", name, "kernel"): weights.T}
    if bias_term:
        out[("params", name, "bias")] = blobs[1].reshape(-1)
    return out
