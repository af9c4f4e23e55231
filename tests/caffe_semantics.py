"""Caffe's forward pass in NumPy: the reference the converted Flax model is checked against.

Written from the semantics of BVLC Caffe's CPU layers (src/caffe/layers/*.cpp), independently of
jaxnsfw and of the converter: only `convert.caffe_pb2` is shared, to read the protobuf messages.
Everything here is in Caffe's own layouts: blobs are NCHW, convolution weights OIHW,
InnerProduct weights (out, in), BatchNorm blobs (running mean sum, running variance sum,
moving-average factor).

A net is run the way Net::Forward runs it: layers in prototxt order, each reading its bottom
blobs by name and writing its top blob by name, so an in-place layer (top == bottom: BatchNorm,
Scale, ReLU in the ResNet) overwrites the blob it read. `forward` therefore returns both the
final value of every blob and every layer's own output.

Every layer's output is stored as float32, as Blob<float> stores it. Arithmetic inside a layer
is done in float64 where Caffe uses BLAS sums (convolution, InnerProduct), which gives the exactly
rounded float32 result; BatchNorm is done step by step in float32 as BatchNormLayer does.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
from google.protobuf import text_format

from convert import caffe_pb2


# ---------------------------------------------------------------------------------------------
# Reading the two model files (with caffe_pb2 only)
# ---------------------------------------------------------------------------------------------

def read_net(path: str | os.PathLike) -> caffe_pb2.NetParameter:
    """A deploy prototxt (protobuf text format)."""
    net = caffe_pb2.NetParameter()
    with open(path, encoding="utf-8") as f:
        text_format.Parse(f.read(), net)
    return net


def blob_array(blob: caffe_pb2.BlobProto) -> np.ndarray:
    """A BlobProto's values as float32 in its stored shape.

    The shape is `shape.dim`, or for blobs written by old Caffe versions the legacy 4-D
    (num, channels, height, width). Values come from `data` (float) or, for blobs written from a
    Blob<double>, `double_data`; Blob<float>::FromProto rounds the latter to float."""
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:
        shape = (blob.num, blob.channels, blob.height, blob.width)
    values = np.asarray(blob.double_data, np.float64) if len(blob.double_data) else np.asarray(blob.data, np.float32)
    return values.astype(np.float32).reshape(shape)


def read_weights(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """A .caffemodel's learned blobs, by layer name. Layers without blobs (data, Split, loss
    layers of a training net) carry nothing and are left out, as Net::CopyTrainedLayersFrom
    leaves them unused."""
    net = caffe_pb2.NetParameter()
    with open(path, "rb") as f:
        net.ParseFromString(f.read())
    return {layer.name: [blob_array(b) for b in layer.blobs] for layer in net.layer if len(layer.blobs)}


# ---------------------------------------------------------------------------------------------
# Which layers a TEST-phase net instantiates (Net::FilterNet, phase rules only)
# ---------------------------------------------------------------------------------------------

def _rule_matches_test_phase(rule: caffe_pb2.NetStateRule) -> bool:
    if rule.stage or rule.not_stage or rule.HasField("min_level") or rule.HasField("max_level"):
        raise NotImplementedError("stage/level rules")
    return not rule.HasField("phase") or rule.phase == caffe_pb2.TEST


def instantiated_layers(net: caffe_pb2.NetParameter) -> list[caffe_pb2.LayerParameter]:
    """Layers kept in a TEST-phase net: with include rules, kept if one matches; otherwise kept
    unless an exclude rule matches."""
    kept = []
    for layer in net.layer:
        if layer.include:
            keep = any(_rule_matches_test_phase(r) for r in layer.include)
        else:
            keep = not any(_rule_matches_test_phase(r) for r in layer.exclude)
        if keep:
            kept.append(layer)
    return kept


# ---------------------------------------------------------------------------------------------
# Spatial hyper-parameters
# ---------------------------------------------------------------------------------------------

def _conv_pair(p: caffe_pb2.ConvolutionParameter, name: str, default: int) -> tuple[int, int]:
    """ConvolutionParameter: `name_h`/`name_w`, else the repeated `name` (one value for both
    spatial axes, or one per axis), else the default."""
    if p.HasField(f"{name}_h") or p.HasField(f"{name}_w"):
        return int(getattr(p, f"{name}_h")), int(getattr(p, f"{name}_w"))
    values = list(getattr(p, name if name != "kernel" else "kernel_size"))
    if not values:
        return default, default
    if len(values) == 1:
        return int(values[0]), int(values[0])
    if len(values) == 2:
        return int(values[0]), int(values[1])
    raise NotImplementedError(f"{len(values)} spatial axes")


def _pool_pair(p: caffe_pb2.PoolingParameter, name: str, default: int | None) -> tuple[int, int]:
    """PoolingParameter: `name_h`/`name_w`, else the scalar `name` (kernel_size for the kernel)."""
    if p.HasField(f"{name}_h") or p.HasField(f"{name}_w"):
        return int(getattr(p, f"{name}_h")), int(getattr(p, f"{name}_w"))
    field = "kernel_size" if name == "kernel" else name
    if p.HasField(field):
        value = int(getattr(p, field))
        return value, value
    if default is None:
        raise ValueError(f"pooling needs {field}")
    return default, default


# ---------------------------------------------------------------------------------------------
# Layers. Each takes NCHW float32 input(s) and returns the layer's float32 output.
# ---------------------------------------------------------------------------------------------

def convolution(x: np.ndarray, weights: np.ndarray, bias: np.ndarray | None,
                stride: tuple[int, int], pad: tuple[int, int]) -> np.ndarray:
    """ConvolutionLayer (group 1, dilation 1): zero padding, then for every output position the
    dot product of the OIHW weights with the C x kh x kw input patch (im2col + GEMM), plus bias.
    Output size floor((H + 2*pad - k) / stride) + 1."""
    n, c, h, w = x.shape
    out_channels, in_channels, kh, kw = weights.shape
    assert in_channels == c, (weights.shape, x.shape)
    oh = (h + 2 * pad[0] - kh) // stride[0] + 1
    ow = (w + 2 * pad[1] - kw) // stride[1] + 1
    padded = np.zeros((n, c, h + 2 * pad[0], w + 2 * pad[1]), np.float64)
    padded[:, :, pad[0]:pad[0] + h, pad[1]:pad[1] + w] = x
    # im2col: rows ordered (c, i, j) to match the flattened OIHW weights.
    columns = np.empty((n, c, kh, kw, oh, ow), np.float64)
    for i in range(kh):
        for j in range(kw):
            columns[:, :, i, j] = padded[:, :, i:i + stride[0] * (oh - 1) + 1:stride[0],
                                         j:j + stride[1] * (ow - 1) + 1:stride[1]]
    columns = columns.reshape(n, c * kh * kw, oh * ow)
    y = np.matmul(weights.reshape(out_channels, -1).astype(np.float64), columns)  # (n, O, oh*ow)
    if bias is not None:
        y += bias.reshape(1, out_channels, 1).astype(np.float64)
    return y.reshape(n, out_channels, oh, ow).astype(np.float32)


def batch_norm_statistics(blobs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The (mean, variance) BatchNormLayer with use_global_stats uses: its stored blobs are
    running sums scaled by the moving-average factor blobs[2][0], and Caffe multiplies them by the
    float reciprocal of the factor, or by 0 when the factor is 0 (all in float32)."""
    f = np.float32(blobs[2].reshape(-1)[0])
    s = np.float32(0) if f == 0 else np.float32(np.float32(1) / f)
    return ((blobs[0].reshape(-1).astype(np.float32) * s).astype(np.float32),
            (blobs[1].reshape(-1).astype(np.float32) * s).astype(np.float32))


def batch_norm(x: np.ndarray, blobs: list[np.ndarray], eps: float) -> np.ndarray:
    """BatchNormLayer with use_global_stats: (x - mean) / (var + eps)^0.5 per channel, every step
    in float32, with mean and var from batch_norm_statistics. There is no affine part (that is the
    following Scale layer)."""
    mean, var = batch_norm_statistics(blobs)
    centered = (x - mean[None, :, None, None]).astype(np.float32)
    denominator = np.power((var + np.float32(eps)).astype(np.float32), np.float32(0.5)).astype(np.float32)
    return (centered / denominator[None, :, None, None]).astype(np.float32)


def scale(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray | None) -> np.ndarray:
    """ScaleLayer (axis 1, num_axes 1, learned scale): x * gamma per channel, + beta with bias_term."""
    y = x.astype(np.float32) * gamma.reshape(1, -1, 1, 1).astype(np.float32)
    if beta is not None:
        y = y.astype(np.float32) + beta.reshape(1, -1, 1, 1).astype(np.float32)
    return y.astype(np.float32)


def relu(x: np.ndarray, negative_slope: float = 0.0) -> np.ndarray:
    """ReLULayer: max(x, 0) + negative_slope * min(x, 0)."""
    y = np.maximum(x, 0)
    if negative_slope:
        y = y + np.float32(negative_slope) * np.minimum(x, 0)
    return y.astype(np.float32)


def pool_output_size(size: int, kernel: int, stride: int, pad: int = 0) -> int:
    """PoolingLayer::Reshape: ceil((size + 2*pad - kernel) / stride) + 1 (rounded *up*), then,
    when there is padding, one less if the last window would start at or beyond the end of the
    image plus its padding (size + pad)."""
    pooled = int(math.ceil((size + 2 * pad - kernel) / stride)) + 1
    if pad > 0 and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


def pool(x: np.ndarray, method: str, kernel: tuple[int, int], stride: tuple[int, int],
         pad: tuple[int, int] = (0, 0)) -> np.ndarray:
    """PoolingLayer::Forward_cpu, MAX or AVE, window by window.

    A window starts at ph*stride - pad. MAX takes the maximum over the window clipped to the image
    (padding never counts). AVE sums the window clipped to the image and divides by the window's
    size clipped only to the padded extent (end at most size + pad), computed before clipping
    to the image: padding inside the border counts in the divisor, overhang beyond it does not."""
    n, c, h, w = x.shape
    oh = pool_output_size(h, kernel[0], stride[0], pad[0])
    ow = pool_output_size(w, kernel[1], stride[1], pad[1])
    y = np.empty((n, c, oh, ow), np.float32)
    for ph in range(oh):
        for pw in range(ow):
            h0, w0 = ph * stride[0] - pad[0], pw * stride[1] - pad[1]
            if method == "MAX":
                h1, w1 = min(h0 + kernel[0], h), min(w0 + kernel[1], w)
                h0, w0 = max(h0, 0), max(w0, 0)
                y[:, :, ph, pw] = x[:, :, h0:h1, w0:w1].max(axis=(2, 3))
            elif method == "AVE":
                h1, w1 = min(h0 + kernel[0], h + pad[0]), min(w0 + kernel[1], w + pad[1])
                pool_size = (h1 - h0) * (w1 - w0)
                h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
                total = x[:, :, h0:h1, w0:w1].astype(np.float64).sum(axis=(2, 3))
                y[:, :, ph, pw] = total / pool_size
            else:
                raise NotImplementedError(f"pooling method {method}")
    return y


def eltwise(inputs: list[np.ndarray], operation: str, coeffs: list[float]) -> np.ndarray:
    """EltwiseLayer: SUM (with optional per-input coefficients), PROD or MAX."""
    if operation == "SUM":
        coeffs = list(coeffs) or [1.0] * len(inputs)
        total = sum(np.float64(k) * x.astype(np.float64) for k, x in zip(coeffs, inputs))
        return np.asarray(total, np.float32)
    if operation == "PROD":
        return np.prod(np.stack(inputs), axis=0).astype(np.float32)
    if operation == "MAX":
        return np.max(np.stack(inputs), axis=0).astype(np.float32)
    raise NotImplementedError(operation)


def inner_product(x: np.ndarray, weights: np.ndarray, bias: np.ndarray | None, num_output: int,
                  transpose: bool = False) -> np.ndarray:
    """InnerProductLayer (axis 1): the input flattened in NCHW (C-contiguous) order, times the
    (num_output, K) weights transposed, plus bias. With transpose the stored weights are (K, num_output)."""
    flat = x.reshape(x.shape[0], -1).astype(np.float64)
    w = weights.reshape(-1, num_output) if transpose else weights.reshape(num_output, -1).T
    y = flat @ w.astype(np.float64)
    if bias is not None:
        y += bias.reshape(1, -1).astype(np.float64)
    return y.astype(np.float32)


def softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    """SoftmaxLayer: exp(x - max) / sum over `axis`."""
    z = x.astype(np.float64)
    z = np.exp(z - z.max(axis=axis, keepdims=True))
    return (z / z.sum(axis=axis, keepdims=True)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# The net
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class ForwardPass:
    blobs: dict[str, np.ndarray]  # every blob's value after the forward pass (NCHW)
    layer_outputs: dict[str, np.ndarray]  # every layer's own output, by layer name (NCHW)


def _blobs_of(layer, weights, count_options):
    blobs = weights.get(layer.name)
    if blobs is None:
        raise KeyError(f"no trained blobs for layer '{layer.name}' ({layer.type})")
    if len(blobs) not in count_options:
        raise ValueError(f"layer '{layer.name}' has {len(blobs)} blobs, expected {count_options}")
    return blobs


def run_layer(layer: caffe_pb2.LayerParameter, bottoms: list[np.ndarray],
              weights: dict[str, list[np.ndarray]]) -> np.ndarray:
    t = layer.type
    if t == "Convolution":
        p = layer.convolution_param
        if p.group != 1 or any(d != 1 for d in p.dilation) or p.axis != 1:
            raise NotImplementedError(f"layer '{layer.name}': group/dilation/axis")
        blobs = _blobs_of(layer, weights, (2,) if p.bias_term else (1,))
        kh, kw = _conv_pair(p, "kernel", 0)
        x = bottoms[0]
        w = blobs[0].reshape(p.num_output, x.shape[1], kh, kw)  # a blob is a flat buffer in OIHW order
        return convolution(x, w, blobs[1] if p.bias_term else None,
                           _conv_pair(p, "stride", 1), _conv_pair(p, "pad", 0))
    if t == "BatchNorm":
        p = layer.batch_norm_param
        if p.HasField("use_global_stats") and not p.use_global_stats:
            raise NotImplementedError(f"layer '{layer.name}': batch statistics (use_global_stats false)")
        blobs = _blobs_of(layer, weights, (3,))
        return batch_norm(bottoms[0], blobs, p.eps)
    if t == "Scale":
        p = layer.scale_param
        if len(bottoms) != 1 or p.axis != 1 or p.num_axes != 1:
            raise NotImplementedError(f"layer '{layer.name}': Scale other than per-channel with a learned scale")
        blobs = _blobs_of(layer, weights, (2,) if p.bias_term else (1,))
        return scale(bottoms[0], blobs[0], blobs[1] if p.bias_term else None)
    if t == "ReLU":
        return relu(bottoms[0], layer.relu_param.negative_slope)
    if t == "Pooling":
        p = layer.pooling_param
        method = caffe_pb2.PoolingParameter.PoolMethod.Name(p.pool)
        x = bottoms[0]
        if p.global_pooling:
            kernel, pad = x.shape[2:], (0, 0)
            stride = (1, 1)
        else:
            kernel, stride, pad = _pool_pair(p, "kernel", None), _pool_pair(p, "stride", 1), _pool_pair(p, "pad", 0)
        return pool(x, method, kernel, stride, pad)
    if t == "Eltwise":
        p = layer.eltwise_param
        return eltwise(bottoms, caffe_pb2.EltwiseParameter.EltwiseOp.Name(p.operation), list(p.coeff))
    if t == "InnerProduct":
        p = layer.inner_product_param
        if p.axis != 1:
            raise NotImplementedError(f"layer '{layer.name}': axis {p.axis}")
        blobs = _blobs_of(layer, weights, (2,) if p.bias_term else (1,))
        return inner_product(bottoms[0], blobs[0], blobs[1] if p.bias_term else None, p.num_output, p.transpose)
    if t == "Softmax":
        return softmax(bottoms[0], layer.softmax_param.axis)
    raise NotImplementedError(f"layer '{layer.name}': type {t}")


def forward(net: caffe_pb2.NetParameter, weights: dict[str, list[np.ndarray]], data: np.ndarray) -> ForwardPass:
    """Net::Forward of a TEST-phase net whose one Input layer receives `data` (NCHW)."""
    blobs: dict[str, np.ndarray] = {}
    outputs: dict[str, np.ndarray] = {}
    for layer in instantiated_layers(net):
        if len(layer.top) != 1:
            raise NotImplementedError(f"layer '{layer.name}' has {len(layer.top)} tops")
        if layer.type == "Input":
            want = tuple(int(d) for d in layer.input_param.shape[0].dim)
            if tuple(data.shape) != want:
                raise ValueError(f"input has shape {data.shape}, the net's Input layer declares {want}")
            out = np.asarray(data, np.float32)
        else:
            out = run_layer(layer, [blobs[b] for b in layer.bottom], weights)
        blobs[layer.top[0]] = out
        outputs[layer.name] = out
    return ForwardPass(blobs=blobs, layer_outputs=outputs)


def forward_files(prototxt: str | os.PathLike, caffemodel: str | os.PathLike, data: np.ndarray) -> ForwardPass:
    return forward(read_net(prototxt), read_weights(caffemodel), data)
