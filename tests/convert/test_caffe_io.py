"""Reading Caffe's files: the generated protobuf module, prototxt, caffemodel and blobs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from convert import caffe_io, caffe_pb2, graph
from convert.errors import ConversionError

REPO = Path(__file__).resolve().parents[2]
REAL_PROTOTXT = REPO / "weights" / "deploy.prototxt"
REAL_CAFFEMODEL = REPO / "weights" / "resnet_50_1by2_nsfw.caffemodel"


def test_checked_in_caffe_pb2_is_generated_from_caffe_proto():
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the test extra) regenerates caffe_pb2.py")
    from convert.regenerate_pb2 import generate_pb2_source

    checked_in = (REPO / "convert" / "caffe_pb2.py").read_text()
    assert generate_pb2_source() == checked_in, "caffe_pb2.py is stale: run python -m convert.regenerate_pb2"


# ---------------------------------------------------------------------------------------------
# prototxt
# ---------------------------------------------------------------------------------------------

def test_real_prototxt_parses_into_its_229_layers():
    net = caffe_io.read_prototxt(REAL_PROTOTXT)
    assert net.name == "ResNet_50_1by2_nsfw"
    assert len(net.layer) == 229
    assert (net.layer[0].name, net.layer[0].type) == ("data", "Input")
    assert list(net.layer[0].input_param.shape[0].dim) == [1, 3, 224, 224]
    assert (net.layer[-1].name, net.layer[-1].type) == ("prob", "Softmax")
    assert {layer.type for layer in net.layer} == set(graph.SUPPORTED_TYPES)
    counts = {t: sum(layer.type == t for layer in net.layer) for t in ("Convolution", "BatchNorm", "Scale")}
    assert counts == {"Convolution": 53, "BatchNorm": 53, "Scale": 53}


def test_in_place_layers_resolve_to_successive_versions_of_their_blob():
    resolved = {layer.name: layer for layer in graph.resolve_graph(caffe_io.read_prototxt(REAL_PROTOTXT), "deploy")}
    assert resolved["conv_1"].tops == ("conv_1@0",)
    assert resolved["bn_1"].bottoms == ("conv_1@0",) and resolved["bn_1"].tops == ("conv_1@1",)
    assert resolved["scale_1"].tops == ("conv_1@2",)
    assert resolved["relu_1"].tops == ("conv_1@3",)
    assert resolved["pool1"].bottoms == ("conv_1@3",)
    # The shortcut of block 1 is the ReLU'd output of block 0.
    assert resolved["eltwise_stage0_block1"].bottoms == ("eltwise_stage0_block0@1", "conv_stage0_block1_branch2c@2")


def test_prototxt_syntax_error_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.prototxt"
    bad.write_text('name: "x"\nlayer {\n  name: "data"\n  type: "Input"\n  top: "data"\n  colour: 3\n}\n')
    with pytest.raises(ConversionError, match=r"bad\.prototxt.*6:3"):
        caffe_io.read_prototxt(bad)


@pytest.mark.parametrize("block", ['layers {\n  name: "conv"\n  type: CONVOLUTION\n}', 'layers: { name: "conv" }'])
def test_v1_layers_prototxt_is_refused_by_name(tmp_path, block):
    old = tmp_path / "old.prototxt"
    old.write_text(f'name: "x"\ninput: "data"\n{block}\n')
    with pytest.raises(ConversionError, match=r"old\.prototxt: uses V1 'layers' entries; upgrade it"):
        caffe_io.read_prototxt(old)


def test_legacy_net_level_input_is_refused(tmp_path):
    net = caffe_pb2.NetParameter(input=["data"], input_dim=[1, 3, 224, 224])
    with pytest.raises(ConversionError, match="legacy net-level 'input'"):
        graph.deploy_layers(net, "old.prototxt")


# ---------------------------------------------------------------------------------------------
# caffemodel
# ---------------------------------------------------------------------------------------------

def test_real_caffemodel_is_the_training_net_with_blobs_in_caffe_layouts():
    model = caffe_io.read_caffemodel(REAL_CAFFEMODEL)
    layers = {layer.name: layer for layer in model.layer}
    assert layers["data"].type == "MemoryData" and not layers["data"].blobs
    assert layers["loss"].type == "SoftmaxWithLoss" and not layers["loss"].blobs
    assert any(layer.type == "Split" for layer in model.layer)

    def shapes(name):
        return [caffe_io.blob_shape(b) for b in layers[name].blobs]

    assert shapes("conv_1") == [(64, 3, 7, 7), (64,)]  # OIHW + bias
    assert shapes("bn_1") == [(64,), (64,), (1,)]  # mean sum, variance sum, factor
    assert shapes("scale_1") == [(64,), (64,)]
    assert shapes("fc_nsfw") == [(2, 1024), (2,)]  # (out, in)
    factor = caffe_io.blob_to_array(layers["bn_1"].blobs[2], "bn_1")
    assert factor.dtype == np.float32 and factor[0] == np.float32(999.9823608398438)


def test_v1_caffemodel_is_refused(tmp_path):
    model = caffe_pb2.NetParameter()
    model.layers.append(caffe_pb2.LayerParameter(name="conv", type="Convolution").SerializeToString())
    path = tmp_path / "old.caffemodel"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ConversionError, match="V1-format caffemodel"):
        caffe_io.read_caffemodel(path)


# ---------------------------------------------------------------------------------------------
# Blobs
# ---------------------------------------------------------------------------------------------

def test_blob_shape_comes_from_shape_dims():
    blob = caffe_pb2.BlobProto(data=np.arange(6, dtype=np.float32))
    blob.shape.dim.extend([2, 3])
    assert caffe_io.blob_shape(blob) == (2, 3)
    np.testing.assert_array_equal(caffe_io.blob_to_array(blob, "b"), np.arange(6).reshape(2, 3))


def test_legacy_num_channels_height_width_are_honoured():
    values = np.arange(2 * 3 * 4 * 5, dtype=np.float32)
    blob = caffe_pb2.BlobProto(num=2, channels=3, height=4, width=5, data=values)
    assert not blob.HasField("shape")
    assert caffe_io.blob_shape(blob) == (2, 3, 4, 5)
    array = caffe_io.blob_to_array(blob, "b")
    assert array.shape == (2, 3, 4, 5)
    assert array[1, 2, 3, 4] == values[-1] and array[0, 1, 0, 0] == 20  # C order, as Caffe stores blobs
    # A legacy bias (1 x 1 x 1 x n).
    bias = caffe_pb2.BlobProto(num=1, channels=1, height=1, width=4, data=[1, 2, 3, 4])
    assert caffe_io.blob_shape(bias) == (1, 1, 1, 4)


def test_shape_takes_precedence_over_legacy_dims():
    blob = caffe_pb2.BlobProto(num=9, channels=9, height=9, width=9, data=[1, 2, 3])
    blob.shape.dim.append(3)
    assert caffe_io.blob_shape(blob) == (3,)


def test_double_data_is_read_and_rounded_to_float32():
    values = [0.1, 1 / 3, 1e-40, -2.5e10]
    blob = caffe_pb2.BlobProto(double_data=values)
    blob.shape.dim.extend([2, 2])
    array = caffe_io.blob_to_array(blob, "b")
    assert array.dtype == np.float32 and array.shape == (2, 2)
    np.testing.assert_array_equal(array.ravel(), np.asarray(values, np.float64).astype(np.float32))
    assert float(array.ravel()[0]) != 0.1  # really rounded: float32(0.1) is not the double 0.1


def test_blob_with_both_float_and_double_data_is_refused():
    blob = caffe_pb2.BlobProto(data=[1.0], double_data=[1.0])
    blob.shape.dim.append(1)
    with pytest.raises(ConversionError, match="both float and double"):
        caffe_io.blob_to_array(blob, "layer 'x' blob 0")


@pytest.mark.parametrize("count", [5, 7, 0])
def test_value_count_must_match_the_shape(count):
    blob = caffe_pb2.BlobProto(data=np.ones(count, np.float32))
    blob.shape.dim.extend([2, 3])
    message = rf"layer 'x' blob 0: blob shape \(2, 3\) needs 6 values, file holds {count}$"
    with pytest.raises(ConversionError, match=message):
        caffe_io.blob_to_array(blob, "layer 'x' blob 0")


def test_legacy_value_count_must_match_too():
    blob = caffe_pb2.BlobProto(num=1, channels=2, height=2, width=2, data=[1, 2, 3])
    with pytest.raises(ConversionError, match=r"\(1, 2, 2, 2\) needs 8 values, file holds 3"):
        caffe_io.blob_to_array(blob, "b")


def test_blob_with_unknown_fields_is_refused():
    blob = caffe_pb2.BlobProto(data=[1.0])
    blob.shape.dim.append(1)
    data = blob.SerializeToString() + bytes([15 << 3 | 0, 1])  # field 15 (not in caffe.proto), varint 1
    parsed = caffe_pb2.BlobProto()
    parsed.ParseFromString(data)
    with pytest.raises(ConversionError, match="fields this reader does not know"):
        caffe_io.blob_to_array(parsed, "b")
