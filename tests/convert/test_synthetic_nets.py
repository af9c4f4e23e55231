"""A converted net computes what Caffe computes.

Small nets of the open_nsfw family are written as Caffe files (prototxt + caffemodel with random
blobs in Caffe's layouts), converted with convert.convert_net, run with the Flax model, and
compared layer by layer with tests/caffe_semantics.py, a NumPy implementation of Caffe's forward
pass that reads the same two files.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from convert.convert import convert_net
from jaxnsfw import pooling
from jaxnsfw.model import OpenNSFW, layer_outputs
from tests import caffe_semantics as caffe
from tests.convert.synthetic_caffe import YAHOO_BN_FACTOR, small_config, write_net_files

# float32-level agreement: relative to the largest magnitude in the compared tensor.
RTOL = 1e-5


def assert_float32_close(actual, expected, what: str) -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, Caffe {expected.shape}"
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * scale, err_msg=what)


def nhwc(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, (0, 2, 3, 1)) if x.ndim == 4 else x


@dataclasses.dataclass(frozen=True)
class Case:
    config: object
    legacy_dims: bool = False  # blobs with old Caffe's num/channels/height/width instead of shape
    double: bool = False  # blobs in double_data
    zero_factor_layers: tuple[str, ...] = ()  # BatchNorm layers whose stored factor is 0


CASES = {
    # pool1 needs ceil rounding (18 -> 9), classifier input 32 x 3 x 3, Yahoo's BN factor.
    "ceil-pool1-3x3-head": Case(small_config()),
    # Two blocks in stage 0, head pool over the whole final map, a BatchNorm with factor 0,
    # a non-default eps, and blobs in the legacy 4-D form.
    "global-head-zero-factor-legacy-dims": Case(
        small_config(stage_sizes=(2, 1), head_pool_kernel=5, batch_norm_eps=1e-3),
        legacy_dims=True, zero_factor_layers=("bn_stage0_block0_branch2b",)),
    # Input 39 -> 20 -> pool1 ceil(17/2)+1 = 10 (floor: 9); head 2x2 over 5x5 -> 4x4; double blobs.
    "input-39-double-data": Case(
        small_config(input_size=39, num_classes=2, head_pool_kernel=2, stem_features=4), double=True),
}


@dataclasses.dataclass
class Converted:
    case: Case
    files: object
    variables: dict
    config: object
    caffe: caffe.ForwardPass
    output: object
    flax_layers: dict


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def converted(request, tmp_path_factory) -> Converted:
    case = CASES[request.param]
    files = write_net_files(tmp_path_factory.mktemp(request.param), case.config, seed=1,
                            legacy_dims=case.legacy_dims, double=case.double,
                            zero_factor_layers=case.zero_factor_layers)
    variables, config = convert_net(files.prototxt, files.caffemodel)
    size = case.config.input_size
    data = np.random.default_rng(2).normal(0, 1, (1, 3, size, size)).astype(np.float32)  # Caffe's NCHW blob
    reference = caffe.forward_files(files.prototxt, files.caffemodel, data)
    output, flax_layers = layer_outputs(OpenNSFW(config), variables, jnp.asarray(nhwc(data)))
    return Converted(case, files, variables, config, reference, output,
                     {name: np.asarray(value) for name, value in flax_layers.items() if name != "__call__"})


def test_config_is_read_off_the_prototxt(converted):
    # Exactly, eps included (a float32 in caffe.proto, read back as the shortest decimal).
    assert converted.config == converted.case.config


def test_logits_and_probabilities_match_caffe(converted):
    name = converted.config.classifier_name
    assert_float32_close(converted.output.logits, converted.caffe.blobs[name], "logits")
    np.testing.assert_allclose(converted.output.probs, converted.caffe.blobs["prob"], rtol=1e-5, atol=1e-6)
    # The embedding is the head pool's output flattened as Caffe's InnerProduct flattens it (NCHW).
    pooled = converted.caffe.blobs["pool"]
    assert_float32_close(converted.output.embedding, pooled.reshape(pooled.shape[0], -1), "embedding")


def test_every_layer_output_matches_caffe(converted):
    caffe_layers = {name for name in converted.caffe.layer_outputs if name != "data"}
    assert set(converted.flax_layers) == caffe_layers
    for layer in converted.files.net.layer:
        if layer.type != "Input":
            assert_float32_close(converted.flax_layers[layer.name], nhwc(converted.caffe.layer_outputs[layer.name]),
                                 f"layer {layer.name}")


def test_caffe_blobs_after_forward_hold_the_last_in_place_layers_output(converted):
    """In Caffe an in-place layer overwrites its bottom blob: blob `conv_1` ends up holding
    relu_1's output. The Flax model's output of the last layer writing each blob must match it."""
    last_writer = {}
    for layer in converted.files.net.layer:
        last_writer[layer.top[0]] = layer.name
    assert last_writer["conv_1"] == "relu_1"
    assert not np.array_equal(converted.caffe.blobs["conv_1"], converted.caffe.layer_outputs["conv_1"])
    for blob, writer in last_writer.items():
        if blob == "data":
            continue
        assert_float32_close(converted.flax_layers[writer], nhwc(converted.caffe.blobs[blob]), f"blob {blob}")


def test_batch_norm_statistics_are_caffes_bit_for_bit(converted):
    """mean = running sum * float32(1 / factor), as BatchNormLayer computes it (0 for factor 0)."""
    stats = converted.variables["batch_stats"]
    bn_layers = [name for name in converted.files.blobs if name.startswith("bn_")]
    assert sorted(stats) == sorted(bn_layers)
    for name in bn_layers:
        blobs = converted.files.blobs[name]
        mean, var = caffe.batch_norm_statistics(blobs)
        assert stats[name]["mean"].dtype == np.float32
        np.testing.assert_array_equal(stats[name]["mean"], mean, err_msg=name)
        np.testing.assert_array_equal(stats[name]["var"], var, err_msg=name)
        if name in converted.case.zero_factor_layers:
            assert not np.any(stats[name]["mean"]) and not np.any(stats[name]["var"])
            assert np.any(blobs[0]), "the stored sums must be non-zero for the test to mean anything"


def test_other_parameters_are_caffes_blobs_in_flax_layouts(converted):
    params = converted.variables["params"]
    blobs = converted.files.blobs
    conv = blobs["conv_1"]
    np.testing.assert_array_equal(params["conv_1"]["kernel"], np.transpose(conv[0], (2, 3, 1, 0)))  # OIHW -> HWIO
    np.testing.assert_array_equal(params["conv_1"]["bias"], conv[1])
    np.testing.assert_array_equal(params["scale_1"]["scale"], blobs["scale_1"][0])
    np.testing.assert_array_equal(params["scale_1"]["bias"], blobs["scale_1"][1])
    fc = blobs[converted.config.classifier_name]
    np.testing.assert_array_equal(params[converted.config.classifier_name]["kernel"], fc[0].T)  # (out, in) -> (in, out)
    flat = traverse_util.flatten_dict(converted.variables)
    assert all(v.dtype == np.float32 for v in flat.values())


def test_cases_exercise_ceil_pooling_and_nchw_flattening(converted):
    """The comparisons above can fail on the details that matter: pool1's size needs Caffe's ceil
    rounding, and the classifier's input has spatial extent, so flattening it NHWC instead of NCHW
    gives other logits (except where the head pools to 1x1)."""
    cfg = converted.config
    conv1 = converted.caffe.layer_outputs["conv_1"].shape[2]
    ceil_size = caffe.pool_output_size(conv1, cfg.stem_pool_kernel, cfg.stem_pool_stride)
    floor_size = (conv1 - cfg.stem_pool_kernel) // cfg.stem_pool_stride + 1
    assert ceil_size != floor_size
    assert converted.caffe.blobs["pool1"].shape[2] == ceil_size
    pooled = converted.caffe.blobs["pool"]
    if pooled.shape[2] * pooled.shape[3] > 1:
        fc = converted.files.blobs[cfg.classifier_name]
        wrong = nhwc(pooled).reshape(1, -1) @ fc[0].T + fc[1]
        assert not np.allclose(wrong, converted.caffe.blobs[cfg.classifier_name], rtol=1e-3, atol=1e-3)


def test_suite_covers_both_head_kinds():
    """At least one case pools the final map to 1x1 and at least one keeps spatial extent."""
    heads = set()
    for case in CASES.values():
        cfg = case.config
        size = cfg.input_size
        size = (size + 2 * cfg.stem_padding - cfg.stem_kernel) // cfg.stem_stride + 1
        size = caffe.pool_output_size(size, cfg.stem_pool_kernel, cfg.stem_pool_stride)
        for stride in cfg.stage_strides:
            size = (size - 1) // stride + 1
        heads.add(caffe.pool_output_size(size, cfg.head_pool_kernel, 1) == 1)
    assert heads == {True, False}
    assert any(case.zero_factor_layers for case in CASES.values())
    assert YAHOO_BN_FACTOR != 1


# ---------------------------------------------------------------------------------------------
# Caffe's pooling arithmetic
# ---------------------------------------------------------------------------------------------

def test_pool_output_size_rounds_up_like_caffe():
    assert pooling.caffe_pool_output_size(112, 3, 2) == 56  # open_nsfw's pool1
    assert pooling.caffe_pool_output_size(18, 3, 2) == 9  # floor would give 8
    assert pooling.caffe_pool_output_size(7, 7, 1) == 1  # open_nsfw's head pool
    # With padding, a last window that would start in the bottom padding is dropped:
    # ceil((4 + 4 - 3) / 2) + 1 = 4, but window 3 would start at 3*2 - 2 = 4 = the image end.
    assert pooling.caffe_pool_output_size(4, 3, 2, 2) == 3


def test_pool_output_size_matches_reference_everywhere():
    checked = 0
    for size, kernel, stride in itertools.product(range(1, 41), range(1, 6), range(1, 5)):
        for pad in range(kernel):  # Caffe requires pad < kernel
            if size + 2 * pad < kernel:
                continue
            want = caffe.pool_output_size(size, kernel, stride, pad)
            assert pooling.caffe_pool_output_size(size, kernel, stride, pad) == want, (size, kernel, stride, pad)
            checked += 1
    assert checked > 1000


def test_reference_pooling_follows_caffes_window_rules():
    """Hand-worked examples of PoolingLayer::Forward_cpu, checking the reference itself."""
    ones = np.ones((1, 1, 3, 3), np.float32)
    # AVE 2x2 stride 2 over 3x3: ceil -> 2x2 output; the overhanging windows divide by the
    # in-image part only (no padding): [[4/4, 2/2], [2/2, 1/1]].
    np.testing.assert_array_equal(caffe.pool(ones, "AVE", (2, 2), (2, 2))[0, 0], np.ones((2, 2)))
    # AVE 3x3 stride 2 pad 1 over 4x4 ones: windows start at -1 and 1 and 3; the first divides by
    # 3 (padding counts), the last ends at min(6, 4 + 1) = 5 and divides by 2.
    out = caffe.pool(np.ones((1, 1, 4, 4), np.float32), "AVE", (3, 3), (2, 2), (1, 1))[0, 0]
    rows = np.array([2 / 3, 3 / 3, 1 / 2])
    np.testing.assert_allclose(out, np.outer(rows, rows), rtol=1e-6)
    # MAX never takes the padding (all values negative here, padding would be 0).
    x = -np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    np.testing.assert_array_equal(caffe.pool(x, "MAX", (2, 2), (2, 2), (1, 1))[0, 0],
                                  [[-1, -2], [-4, -5]])


def test_reference_batch_norm_divides_the_stored_sums_by_the_factor():
    blobs = [np.array([2.0], np.float32), np.array([8.0], np.float32), np.array([2.0], np.float32)]
    x = np.full((1, 1, 1, 1), 5.0, np.float32)
    assert caffe.batch_norm(x, blobs, eps=0.0).item() == 2.0  # (5 - 1) / sqrt(4)
    zero = [blobs[0], blobs[1], np.array([0.0], np.float32)]
    np.testing.assert_allclose(caffe.batch_norm(x, zero, eps=1e-4).item(), 5.0 / math.sqrt(1e-4), rtol=1e-6)


POOL_CASES = [
    # (size, kernel, stride, pad)
    (18, 3, 2, 0), (112, 3, 2, 0), (7, 7, 1, 0), (5, 2, 1, 0), (9, 3, 3, 0), (10, 4, 3, 0),
    (4, 3, 2, 1), (4, 3, 2, 2), (7, 3, 2, 1), (8, 5, 3, 2), (6, 2, 2, 1), (11, 4, 2, 3), (3, 3, 1, 1),
]


@pytest.mark.parametrize("size,kernel,stride,pad", POOL_CASES)
def test_flax_pooling_matches_reference(size, kernel, stride, pad):
    x = np.random.default_rng(size * 100 + kernel * 10 + pad).normal(0, 1, (2, 3, size, size)).astype(np.float32)
    x[0, 0] = -np.abs(x[0, 0]) - 1  # an all-negative channel: MAX must not pick up padding zeros
    for method, fn in (("MAX", pooling.caffe_max_pool), ("AVE", pooling.caffe_ave_pool)):
        want = caffe.pool(x, method, (kernel, kernel), (stride, stride), (pad, pad))
        got = np.asarray(fn(jnp.asarray(nhwc(x)), kernel, stride, pad))
        np.testing.assert_allclose(got, nhwc(want), rtol=1e-6, atol=1e-6, err_msg=f"{method} {size=} {kernel=} "
                                                                                   f"{stride=} {pad=}")
