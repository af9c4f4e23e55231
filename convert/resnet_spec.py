"""The Caffe layer list of an open_nsfw-family ResNet, built from a ResNetConfig.

Used two ways: to check that a prototxt describes exactly the net that jaxnsfw.model.OpenNSFW
computes (same layers, wiring, kernel sizes, strides, pads, ...), and to write synthetic Caffe nets
for the tests. `infer_config` reads the config back off a prototxt.
"""

from __future__ import annotations

import re

import numpy as np

from convert import caffe_pb2
from convert.errors import ConversionError
from jaxnsfw.config import ResNetConfig


def _conv(net, name, bottom, top, features, kernel, stride, pad):
    layer = net.layer.add(name=name, type="Convolution", bottom=[bottom], top=[top])
    p = layer.convolution_param
    p.num_output, p.bias_term = features, True
    p.kernel_size.append(kernel)
    p.stride.append(stride)
    p.pad.append(pad)


def _bn_scale(net, suffix, blob, eps):
    bn = net.layer.add(name=f"bn_{suffix}", type="BatchNorm", bottom=[blob], top=[blob])
    bn.batch_norm_param.use_global_stats = True
    bn.batch_norm_param.eps = eps
    scale = net.layer.add(name=f"scale_{suffix}", type="Scale", bottom=[blob], top=[blob])
    scale.scale_param.bias_term = True


def _conv_bn_scale(net, suffix, bottom, features, kernel, stride, pad, eps):
    _conv(net, f"conv_{suffix}", bottom, f"conv_{suffix}", features, kernel, stride, pad)
    _bn_scale(net, suffix, f"conv_{suffix}", eps)
    return f"conv_{suffix}"


def _relu(net, name, blob):
    net.layer.add(name=name, type="ReLU", bottom=[blob], top=[blob])


def build_resnet_net(config: ResNetConfig, name: str = "ResNet_50_1by2_nsfw") -> caffe_pb2.NetParameter:
    """The deploy net (no blobs) that OpenNSFW(config) computes, in Yahoo's layer naming."""
    net = caffe_pb2.NetParameter(name=name)
    data = net.layer.add(name="data", type="Input", top=["data"])
    data.input_param.shape.add(dim=[1, config.input_channels, config.input_size, config.input_size])
    eps = config.batch_norm_eps
    x = _conv_bn_scale(net, "1", "data", config.stem_features, config.stem_kernel, config.stem_stride,
                       config.stem_padding, eps)
    _relu(net, "relu_1", x)
    pool1 = net.layer.add(name="pool1", type="Pooling", bottom=[x], top=["pool1"])
    pool1.pooling_param.pool = caffe_pb2.PoolingParameter.MAX
    pool1.pooling_param.kernel_size = config.stem_pool_kernel
    pool1.pooling_param.stride = config.stem_pool_stride
    x = "pool1"
    for stage, (blocks, width, stride) in enumerate(zip(config.stage_sizes, config.stage_widths, config.stage_strides)):
        for block in range(blocks):
            prefix = f"stage{stage}_block{block}"
            block_stride = stride if block == 0 else 1
            out = width * config.expansion
            shortcut = (_conv_bn_scale(net, f"{prefix}_proj_shortcut", x, out, 1, block_stride, 0, eps)
                        if block == 0 else x)
            y = _conv_bn_scale(net, f"{prefix}_branch2a", x, width, 1, block_stride, 0, eps)
            _relu(net, f"relu_{prefix}_branch2a", y)
            y = _conv_bn_scale(net, f"{prefix}_branch2b", y, width, 3, 1, 1, eps)
            _relu(net, f"relu_{prefix}_branch2b", y)
            y = _conv_bn_scale(net, f"{prefix}_branch2c", y, out, 1, 1, 0, eps)
            net.layer.add(name=f"eltwise_{prefix}", type="Eltwise", bottom=[shortcut, y], top=[f"eltwise_{prefix}"])
            x = f"eltwise_{prefix}"
            _relu(net, f"relu_{prefix}", x)
    pool = net.layer.add(name="pool", type="Pooling", bottom=[x], top=["pool"])
    pool.pooling_param.pool = caffe_pb2.PoolingParameter.AVE
    pool.pooling_param.kernel_size = config.head_pool_kernel
    pool.pooling_param.stride = 1
    fc = net.layer.add(name=config.classifier_name, type="InnerProduct", bottom=["pool"], top=[config.classifier_name])
    fc.inner_product_param.num_output = config.num_classes
    net.layer.add(name="prob", type="Softmax", bottom=[config.classifier_name], top=["prob"])
    return net


def _layer(net, name, source) -> caffe_pb2.LayerParameter:
    for layer in net.layer:
        if layer.name == name:
            return layer
    raise ConversionError(f"{source}: no layer named '{name}': not an open_nsfw-family ResNet prototxt")


def _single(values, default=None):
    return values[0] if len(values) else default


def infer_config(net: caffe_pb2.NetParameter, source: str = "prototxt") -> ResNetConfig:
    """Reads stage sizes, widths, strides and the rest off Yahoo's layer names and parameters."""
    data = _layer(net, "data", source)
    if data.type != "Input" or len(data.input_param.shape) != 1 or len(data.input_param.shape[0].dim) != 4:
        raise ConversionError(f"{source}: layer 'data' must be an Input layer with one 4-D shape")
    _, channels, height, width = data.input_param.shape[0].dim
    if height != width:
        raise ConversionError(f"{source}: input is {height}x{width}; only square inputs are supported")
    blocks: dict[int, int] = {}
    for layer in net.layer:
        match = re.fullmatch(r"conv_stage(\d+)_block(\d+)_branch2a", layer.name)
        if match:
            stage, block = int(match[1]), int(match[2])
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
    if not blocks or sorted(blocks) != list(range(len(blocks))):
        raise ConversionError(f"{source}: no consecutive conv_stage<S>_block<B>_branch2a layers found")
    stages = range(len(blocks))
    first = [_layer(net, f"conv_stage{s}_block0_branch2a", source).convolution_param for s in stages]
    branch2c = _layer(net, "conv_stage0_block0_branch2c", source).convolution_param
    stem = _layer(net, "conv_1", source).convolution_param
    pool1 = _layer(net, "pool1", source).pooling_param
    head = _layer(net, "pool", source).pooling_param
    classifiers = [layer for layer in net.layer if layer.type == "InnerProduct"]
    if len(classifiers) != 1:
        raise ConversionError(f"{source}: expected one InnerProduct layer, found {len(classifiers)}")
    bn = _layer(net, "bn_1", source).batch_norm_param
    if first[0].num_output == 0 or branch2c.num_output % first[0].num_output:
        raise ConversionError(f"{source}: conv_stage0_block0_branch2c width is not a multiple of branch2a's")
    return ResNetConfig(
        input_size=int(height),
        input_channels=int(channels),
        stem_features=stem.num_output,
        stem_kernel=_single(stem.kernel_size, 0),
        stem_stride=_single(stem.stride, 1),
        stem_padding=_single(stem.pad, 0),
        stem_pool_kernel=pool1.kernel_size,
        stem_pool_stride=pool1.stride,
        stage_sizes=tuple(blocks[s] for s in stages),
        stage_widths=tuple(p.num_output for p in first),
        stage_strides=tuple(_single(p.stride, 1) for p in first),
        expansion=branch2c.num_output // first[0].num_output,
        head_pool_kernel=head.kernel_size,
        num_classes=classifiers[0].inner_product_param.num_output,
        # Caffe keeps eps as float32; its shortest repr (1e-05) names the same float32 exactly.
        batch_norm_eps=float(str(np.float32(bn.eps))),
        classifier_name=classifiers[0].name,
    )
