"""A prototxt as a graph: supported layer types, in-place blobs resolved, layers compared.

Caffe's in-place layers (BatchNorm, Scale, ReLU with top == bottom) overwrite their input blob,
so one blob name stands for several values over a forward pass. Resolving gives every write its
own version, `conv_1@0` (the raw convolution) ... `conv_1@3` (after the ReLU), which is what
'the same wiring' has to mean when two nets are compared.
"""

from __future__ import annotations

import dataclasses

from convert import caffe_pb2
from convert.errors import ConversionError

# Layer types whose parameters this converter reads and whose semantics the Flax model implements.
SUPPORTED_TYPES = ("Input", "Convolution", "BatchNorm", "Scale", "ReLU", "Pooling", "Eltwise",
                   "InnerProduct", "Softmax")
# Types that carry learned blobs in a caffemodel, with the number of blobs Caffe stores.
PARAMETER_LAYER_TYPES = ("Convolution", "BatchNorm", "Scale", "InnerProduct")


@dataclasses.dataclass(frozen=True)
class ResolvedLayer:
    name: str
    type: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    signature: tuple  # the layer's normalized hyper-parameters, see layer_signature


def _pair(repeated, h, w, default, has_h):
    """Caffe's kernel/stride/pad: either *_h/*_w or one repeated value for both axes."""
    if has_h:
        return (h, w)
    if len(repeated) > 2:
        raise ValueError("N-d (more than 2 spatial axes) parameters are not supported")
    if len(repeated) == 2:
        return tuple(repeated)
    return (repeated[0], repeated[0]) if len(repeated) else (default, default)


def layer_signature(layer: caffe_pb2.LayerParameter) -> tuple:
    """The hyper-parameters that decide what a layer computes, with Caffe's defaults applied."""
    t = layer.type
    if t == "Input":
        return tuple(tuple(s.dim) for s in layer.input_param.shape)
    if t == "Convolution":
        p = layer.convolution_param
        return (("num_output", p.num_output), ("bias_term", p.bias_term),
                ("kernel", _pair(p.kernel_size, p.kernel_h, p.kernel_w, 0, p.HasField("kernel_h"))),
                ("stride", _pair(p.stride, p.stride_h, p.stride_w, 1, p.HasField("stride_h"))),
                ("pad", _pair(p.pad, p.pad_h, p.pad_w, 0, p.HasField("pad_h"))),
                ("dilation", tuple(p.dilation) or (1,)), ("group", p.group), ("axis", p.axis))
    if t == "BatchNorm":
        p = layer.batch_norm_param
        # BatchNormLayer: a TEST-phase net uses the stored statistics unless told otherwise.
        return (("use_global_stats", p.use_global_stats if p.HasField("use_global_stats") else True),
                ("eps", p.eps))
    if t == "Scale":
        p = layer.scale_param
        return (("axis", p.axis), ("num_axes", p.num_axes), ("bias_term", p.bias_term))
    if t == "ReLU":
        return (("negative_slope", layer.relu_param.negative_slope),)
    if t == "Pooling":
        p = layer.pooling_param
        return (("pool", caffe_pb2.PoolingParameter.PoolMethod.Name(p.pool)),
                ("kernel", _pair([p.kernel_size] if p.HasField("kernel_size") else [], p.kernel_h, p.kernel_w, 0,
                                 p.HasField("kernel_h"))),
                ("stride", _pair([p.stride], p.stride_h, p.stride_w, 1, p.HasField("stride_h"))),
                ("pad", _pair([p.pad], p.pad_h, p.pad_w, 0, p.HasField("pad_h"))),
                ("global_pooling", p.global_pooling))
    if t == "Eltwise":
        p = layer.eltwise_param
        coeffs = tuple(p.coeff) if any(c != 1 for c in p.coeff) else ()
        return (("operation", caffe_pb2.EltwiseParameter.EltwiseOp.Name(p.operation)), ("coeff", coeffs))
    if t == "InnerProduct":
        p = layer.inner_product_param
        return (("num_output", p.num_output), ("bias_term", p.bias_term), ("axis", p.axis),
                ("transpose", p.transpose))
    if t == "Softmax":
        return (("axis", layer.softmax_param.axis),)
    raise ConversionError(f"layer '{layer.name}' has type '{t}', which jaxnsfw cannot convert "
                          f"(supported: {', '.join(SUPPORTED_TYPES)})")


def _in_test_phase(layer: caffe_pb2.LayerParameter, source: str) -> bool:
    """Net::FilterNet for a TEST-phase net, for rules that name only a phase."""
    for rule in list(layer.include) + list(layer.exclude):
        if rule.stage or rule.not_stage or rule.HasField("min_level") or rule.HasField("max_level"):
            raise ConversionError(f"{source}: layer '{layer.name}' has stage/level rules, which are not supported")
    if layer.include:
        return any(not r.HasField("phase") or r.phase == caffe_pb2.TEST for r in layer.include)
    return not any(not r.HasField("phase") or r.phase == caffe_pb2.TEST for r in layer.exclude)


def deploy_layers(net: caffe_pb2.NetParameter, source: str) -> list[caffe_pb2.LayerParameter]:
    """The layers a TEST-phase Caffe net instantiates; unsupported types fail here, by name."""
    if net.input or net.input_shape or net.input_dim:
        raise ConversionError(f"{source}: legacy net-level 'input' fields; declare an Input layer instead")
    layers = [layer for layer in net.layer if _in_test_phase(layer, source)]
    for layer in layers:
        if layer.type not in SUPPORTED_TYPES:
            raise ConversionError(f"{source}: layer '{layer.name}' has type '{layer.type}', which jaxnsfw cannot "
                                  f"convert (supported: {', '.join(SUPPORTED_TYPES)})")
    names = [layer.name for layer in layers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConversionError(f"{source}: duplicate layer names {duplicates}")
    return layers


def resolve_graph(net: caffe_pb2.NetParameter, source: str) -> list[ResolvedLayer]:
    """Layers in order, every blob read or written named by its version (`blob@k`)."""
    version: dict[str, int] = {}
    resolved = []
    for layer in deploy_layers(net, source):
        bottoms = []
        for blob in layer.bottom:
            if blob not in version:
                raise ConversionError(f"{source}: layer '{layer.name}' reads blob '{blob}' "
                                      "that no earlier layer writes")
            bottoms.append(f"{blob}@{version[blob]}")
        tops = []
        for blob in layer.top:
            version[blob] = version[blob] + 1 if blob in version else 0
            tops.append(f"{blob}@{version[blob]}")
        try:
            signature = layer_signature(layer)
        except ValueError as err:
            raise ConversionError(f"{source}: layer '{layer.name}': {err}") from err
        resolved.append(ResolvedLayer(layer.name, layer.type, tuple(bottoms), tuple(tops), signature))
    return resolved


def check_same_graph(actual: list[ResolvedLayer], expected: list[ResolvedLayer], source: str) -> None:
    """Fails at the first layer where `actual` computes something other than `expected`."""
    expected_names = {layer.name for layer in expected}
    actual_names = {layer.name for layer in actual}
    extra = [layer.name for layer in actual if layer.name not in expected_names]
    missing = [layer.name for layer in expected if layer.name not in actual_names]
    if extra or missing:
        raise ConversionError(f"{source}: layers differ from the ResNet the Flax model implements: "
                              f"unexpected {extra[:5]}, missing {missing[:5]}")
    for index, (got, want) in enumerate(zip(actual, expected)):
        if got != want:
            raise ConversionError(f"{source}: layer #{index} '{got.name}' differs from the ResNet the Flax model "
                                  f"implements:\n  expected {want}\n  found    {got}")
