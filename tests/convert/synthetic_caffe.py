"""Small open_nsfw-family Caffe nets for the converter tests: a deploy prototxt and a caffemodel
with random blobs in Caffe's layouts, written the way Caffe writes them.

The prototxt comes from convert.resnet_spec.build_resnet_net; the blobs' shapes are worked out
here from the prototxt with Caffe's own shape rules (convolution floor, pooling ceil), and the
caffemodel mimics a snapshot of the training net: blob-less data and loss layers around the
layers that carry blobs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from convert import caffe_pb2
from convert.resnet_spec import build_resnet_net
from jaxnsfw.config import ResNetConfig
from tests.caffe_semantics import pool_output_size

# The moving-average factor Yahoo's caffemodel stores in every BatchNorm layer (float32).
YAHOO_BN_FACTOR = np.float32(999.9823608398438)


def small_config(**overrides) -> ResNetConfig:
    """A tiny ResNet of the open_nsfw family. Input 35: conv_1 (7x7, stride 2, pad 3) gives 18x18,
    and pool1 (3x3, stride 2) then needs Caffe's ceil rounding: ceil(15/2)+1 = 9, floor would
    give 8. Stage 1 (stride 2) leaves 5x5; the 3x3 head pool gives 3x3, so the classifier sees
    a 32 x 3 x 3 input whose NCHW flatten order matters."""
    fields = dict(input_size=35, stem_features=8, stage_sizes=(1, 2), stage_widths=(4, 8),
                  stage_strides=(1, 2), head_pool_kernel=3, num_classes=3)
    fields.update(overrides)
    return ResNetConfig(**fields)


def blob_shapes(net: caffe_pb2.NetParameter) -> dict[str, list[tuple[int, ...]]]:
    """The blob shapes Caffe expects for every parameterized layer, from the prototxt alone."""
    shape: dict[str, tuple[int, int, int]] = {}  # blob name -> (C, H, W)
    shapes: dict[str, list[tuple[int, ...]]] = {}
    for layer in net.layer:
        if layer.type == "Input":
            _, c, h, w = layer.input_param.shape[0].dim
            shape[layer.top[0]] = (c, h, w)
            continue
        c, h, w = shape[layer.bottom[0]]
        if layer.type == "Convolution":
            p = layer.convolution_param
            k, s, pad = p.kernel_size[0], (p.stride or [1])[0], (p.pad or [0])[0]
            shapes[layer.name] = [(p.num_output, c, k, k), (p.num_output,)]
            shape[layer.top[0]] = (p.num_output, (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1)
        elif layer.type == "BatchNorm":
            shapes[layer.name] = [(c,), (c,), (1,)]
        elif layer.type == "Scale":
            shapes[layer.name] = [(c,), (c,)]
        elif layer.type == "Pooling":
            p = layer.pooling_param
            shape[layer.top[0]] = (c, pool_output_size(h, p.kernel_size, p.stride, p.pad),
                                   pool_output_size(w, p.kernel_size, p.stride, p.pad))
        elif layer.type == "InnerProduct":
            n = layer.inner_product_param.num_output
            shapes[layer.name] = [(n, c * h * w), (n,)]
            shape[layer.top[0]] = (n, 1, 1)
        else:
            shape[layer.top[0]] = (c, h, w)
    return shapes


def random_blobs(net: caffe_pb2.NetParameter, seed: int, bn_factor: float = YAHOO_BN_FACTOR,
                 zero_factor_layers: tuple[str, ...] = ()) -> dict[str, list[np.ndarray]]:
    """Random float32 blobs in Caffe's layouts (conv OIHW + bias, BatchNorm running sums + factor,
    Scale gamma/beta, InnerProduct (out, in) + bias), scaled to keep activations of order 1.

    BatchNorm blobs are stored as Caffe stores them: mean and variance multiplied by the
    moving-average factor. Layers in `zero_factor_layers` store a factor of 0 (Caffe then uses
    mean 0 and variance 0) with arbitrary sums that must be ignored."""
    rng = np.random.default_rng(seed)
    blobs = {}
    all_shapes = blob_shapes(net)
    for layer in net.layer:
        shapes = all_shapes.get(layer.name)
        if shapes is None:
            continue
        if layer.type == "Convolution":
            o, c, kh, kw = shapes[0]
            values = [rng.normal(0, np.sqrt(2 / (c * kh * kw)), shapes[0]), rng.uniform(-0.2, 0.2, shapes[1])]
        elif layer.type == "BatchNorm":
            mean, var = rng.uniform(-0.5, 0.5, shapes[0]), rng.uniform(0.5, 2.0, shapes[1])
            if layer.name in zero_factor_layers:
                values = [rng.uniform(-5, 5, shapes[0]), rng.uniform(1, 5, shapes[1]), np.zeros(1)]
            else:
                f = np.float32(bn_factor)
                values = [np.float32(mean) * f, np.float32(var) * f, np.full(1, f)]
        elif layer.type == "Scale":
            values = [rng.uniform(0.5, 1.5, shapes[0]), rng.uniform(-0.3, 0.3, shapes[1])]
        else:  # InnerProduct
            n, k = shapes[0]
            values = [rng.normal(0, 1 / np.sqrt(k), shapes[0]), rng.uniform(-0.5, 0.5, shapes[1])]
        blobs[layer.name] = [np.asarray(v, np.float32) for v in values]
    return blobs


def blob_proto(array: np.ndarray, legacy_dims: bool = False, double: bool = False) -> caffe_pb2.BlobProto:
    """A BlobProto as Caffe writes it: `shape`, or (old Caffe) num/channels/height/width with
    the shape right-aligned in 4-D; values in `data`, or `double_data` for a Blob<double>."""
    blob = caffe_pb2.BlobProto()
    if legacy_dims:
        assert array.ndim <= 4
        blob.num, blob.channels, blob.height, blob.width = (1,) * (4 - array.ndim) + array.shape
    else:
        blob.shape.dim.extend(array.shape)
    if double:
        blob.double_data.extend(array.astype(np.float64).ravel().tolist())
    else:
        blob.data.extend(array.astype(np.float32).ravel().tolist())
    return blob


def caffemodel_message(net: caffe_pb2.NetParameter, blobs: dict[str, list[np.ndarray]],
                       legacy_dims: bool = False, double: bool = False,
                       extra_layers: tuple[caffe_pb2.LayerParameter, ...] = ()) -> caffe_pb2.NetParameter:
    """A training-net snapshot: a blob-less MemoryData layer instead of Input, every deploy layer
    with its blobs (if any), a blob-less SoftmaxWithLoss at the end, and `extra_layers` before it."""
    model = caffe_pb2.NetParameter(name=net.name)
    for layer in net.layer:
        entry = model.layer.add(name=layer.name, type=layer.type, bottom=layer.bottom, top=layer.top)
        if layer.type == "Input":
            entry.type = "MemoryData"
        for array in blobs.get(layer.name, []):
            entry.blobs.append(blob_proto(array, legacy_dims, double))
    for extra in extra_layers:
        model.layer.append(extra)
    last = net.layer[-2].top[0]  # the classifier's output
    model.layer.add(name="loss", type="SoftmaxWithLoss", bottom=[last, "label"], top=["loss"])
    return model


@dataclasses.dataclass
class NetFiles:
    config: ResNetConfig
    prototxt: Path
    caffemodel: Path
    net: caffe_pb2.NetParameter
    blobs: dict[str, list[np.ndarray]]


def write_prototxt(path: Path, net: caffe_pb2.NetParameter) -> Path:
    path.write_text(text_format.MessageToString(net))
    return path


def write_caffemodel(path: Path, model: caffe_pb2.NetParameter) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def write_net_files(directory: Path, config: ResNetConfig, seed: int = 0, name: str = "net",
                    legacy_dims: bool = False, double: bool = False,
                    zero_factor_layers: tuple[str, ...] = ()) -> NetFiles:
    """<name>.prototxt and <name>.caffemodel for `config`, with random blobs from `seed`."""
    directory.mkdir(parents=True, exist_ok=True)
    net = build_resnet_net(config)
    blobs = random_blobs(net, seed, zero_factor_layers=zero_factor_layers)
    prototxt = write_prototxt(directory / f"{name}.prototxt", net)
    caffemodel = write_caffemodel(directory / f"{name}.caffemodel",
                                  caffemodel_message(net, blobs, legacy_dims=legacy_dims, double=double))
    return NetFiles(config, prototxt, caffemodel, net, blobs)
