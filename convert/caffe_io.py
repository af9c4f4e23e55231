"""Reads Caffe's two model files with the project's own caffe.proto.

deploy.prototxt is protobuf text format, the .caffemodel is protobuf binary. Both become
`NetParameter` messages; blobs become float32 NumPy arrays in Caffe's own (NCHW, OIHW) layout.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from google.protobuf import message, text_format
from google.protobuf.unknown_fields import UnknownFieldSet

from convert import caffe_pb2
from convert.errors import ConversionError


def read_prototxt(path: str | os.PathLike) -> caffe_pb2.NetParameter:
    """Parses a network definition (text format); fails naming the file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConversionError(f"{path}: cannot read prototxt: {err}") from err
    net = caffe_pb2.NetParameter()
    try:
        text_format.Parse(text, net)
    except text_format.ParseError as err:
        # `layers` is declared as bytes in caffe.proto, so a V1 prototxt's `layers { ... }` blocks
        # fail to parse as text instead of landing in net.layers: recognise them here.
        if re.search(r"^\s*layers\s*:?\s*\{", text, re.MULTILINE):
            raise ConversionError(f"{path}: uses V1 'layers' entries; upgrade it with Caffe's "
                                  "upgrade_net_proto_text") from err
        raise ConversionError(f"{path}: not a Caffe prototxt this converter understands: {err}") from err
    return net


def read_caffemodel(path: str | os.PathLike) -> caffe_pb2.NetParameter:
    """Parses trained weights (binary format); a truncated or corrupted file fails loudly."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ConversionError(f"{path}: cannot read caffemodel: {err}") from err
    net = caffe_pb2.NetParameter()
    try:
        net.ParseFromString(data)
    except message.DecodeError as err:
        raise ConversionError(f"{path}: caffemodel is truncated or corrupted ({err})") from err
    if net.layers:
        raise ConversionError(f"{path}: V1-format caffemodel ('layers'); upgrade it with upgrade_net_proto_binary")
    if not net.layer:
        raise ConversionError(f"{path}: caffemodel holds no layers (not a caffemodel, or empty)")
    return net


def blob_shape(blob: caffe_pb2.BlobProto) -> tuple[int, ...]:
    """The blob's shape: `shape.dim`, or the legacy num/channels/height/width when absent."""
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    # Caffe's legacy 4-D blobs; Net::CopyTrainedLayersFrom compares them as (N, C, H, W).
    return (blob.num, blob.channels, blob.height, blob.width)


def blob_to_array(blob: caffe_pb2.BlobProto, where: str) -> np.ndarray:
    """The blob's values as float32 in its Caffe shape. `where` names it in errors."""
    if len(UnknownFieldSet(blob)):
        raise ConversionError(f"{where}: blob has fields this reader does not know; refusing to guess")
    shape = blob_shape(blob)
    if len(blob.data) and len(blob.double_data):
        raise ConversionError(f"{where}: blob holds both float and double data")
    values = np.asarray(blob.double_data if len(blob.double_data) else blob.data)
    expected = int(np.prod(shape, dtype=np.int64))
    if values.size != expected:
        raise ConversionError(f"{where}: blob shape {shape} needs {expected} values, file holds {values.size}")
    # Caffe stores float32; double_data (from Caffe's double nets) is rounded the way Blob<float> would.
    return values.astype(np.float32).reshape(shape)
