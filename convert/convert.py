"""deploy.prototxt + .caffemodel -> Flax variables of jaxnsfw.model.OpenNSFW.

Nothing is guessed: the prototxt must describe exactly the net the Flax module computes, every
parameterized layer must find its blobs in the caffemodel, every blob in the caffemodel must be
used, and every Flax variable must be filled with an array of its shape. Otherwise the conversion
stops with a ConversionError that names the file and layer.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from flax import traverse_util

from convert import caffe_io, caffe_pb2, graph, layers, resnet_spec
from convert.errors import ConversionError
from jaxnsfw.config import ResNetConfig
from jaxnsfw.model import variable_shapes


def _layer_variables(layer, blobs: list[np.ndarray]) -> dict:
    if layer.type == "Convolution":
        return layers.convolution(layer.name, blobs, layer.convolution_param.bias_term)
    if layer.type == "BatchNorm":
        return layers.batch_norm(layer.name, blobs)
    if layer.type == "Scale":
        return layers.scale(layer.name, blobs, layer.scale_param.bias_term)
    if layer.type == "InnerProduct":
        return layers.inner_product(layer.name, blobs, layer.inner_product_param.bias_term)
    raise AssertionError(layer.type)  # deploy_layers admits no other parameterized type


def convert_net(prototxt: str | os.PathLike, caffemodel: str | os.PathLike) -> tuple[dict, ResNetConfig]:
    """(Flax variables as nested dicts of float32 arrays, the ResNetConfig they belong to)."""
    deploy = caffe_io.read_prototxt(prototxt)
    source = str(prototxt)
    resolved = graph.resolve_graph(deploy, source)  # fails first on unsupported layer types
    config = resnet_spec.infer_config(deploy, source)
    expected = graph.resolve_graph(resnet_spec.build_resnet_net(config), "expected")
    graph.check_same_graph(resolved, expected, source)

    trained = caffe_io.read_caffemodel(caffemodel)
    blob_layers: dict[str, caffe_pb2.LayerParameter] = {}
    for layer in trained.layer:
        # Caffe matches trained layers to net layers by name and ignores blob-less extras
        # (the training net's data, Split and loss layers).
        if len(layer.blobs) == 0:
            continue
        if layer.name in blob_layers:
            raise ConversionError(f"{caffemodel}: two layers named '{layer.name}' carry blobs")
        blob_layers[layer.name] = layer

    target = traverse_util.flatten_dict(variable_shapes(config))
    filled: dict[tuple[str, ...], np.ndarray] = {}
    for layer in graph.deploy_layers(deploy, source):
        if layer.type not in graph.PARAMETER_LAYER_TYPES:
            continue
        source_layer = blob_layers.pop(layer.name, None)
        if source_layer is None:
            raise ConversionError(f"{caffemodel}: no blobs for prototxt layer '{layer.name}' ({layer.type}): "
                                  "the prototxt and caffemodel do not belong together")
        if source_layer.type != layer.type:
            raise ConversionError(f"{caffemodel}: layer '{layer.name}' is a {source_layer.type} in the caffemodel "
                                  f"but a {layer.type} in the prototxt")
        blobs = [caffe_io.blob_to_array(blob, f"{caffemodel}: layer '{layer.name}' blob {i}")
                 for i, blob in enumerate(source_layer.blobs)]
        for key, value in _layer_variables(layer, blobs).items():
            if key not in target:
                raise ConversionError(f"converter produced {'/'.join(key)}, which the Flax model does not have")
            if value.shape != target[key].shape:
                raise ConversionError(
                    f"{caffemodel}: layer '{layer.name}': blob shape does not match the prototxt: blobs "
                    f"{[b.shape for b in blobs]} (Caffe layout) give {key[2]} {value.shape}, the net needs "
                    f"{target[key].shape}")
            filled[key] = value
    if blob_layers:
        unused = ", ".join(f"'{name}' ({layer.type}, {len(layer.blobs)} blobs)" for name, layer in blob_layers.items())
        raise ConversionError(f"{caffemodel}: blobs of layers the prototxt does not have: {unused}; "
                              "the prototxt and caffemodel do not belong together")

    unfilled = sorted("/".join(key) for key in target if key not in filled)
    if unfilled:
        raise ConversionError(f"Flax variables left unfilled: {unfilled[:5]}")
    variables = traverse_util.unflatten_dict({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in filled.items()})
    return variables, config


def provenance(prototxt: str | os.PathLike, caffemodel: str | os.PathLike) -> dict[str, str]:
    """What the checkpoint was made from, stored in its metadata."""
    def digest(path):
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    return {"source_prototxt": Path(prototxt).name, "source_prototxt_sha256": digest(prototxt),
            "source_caffemodel": Path(caffemodel).name, "source_caffemodel_sha256": digest(caffemodel),
            "license": "BSD-2-Clause, Copyright 2016 Yahoo Inc. (open_nsfw); see weights/LICENSE.md"}
