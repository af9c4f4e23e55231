"""Yahoo's own files: weights/deploy.prototxt + resnet_50_1by2_nsfw.caffemodel.

The full-size conversion (about a second) is done once for this module. That the shipped
checkpoint is a fresh conversion of these files is tests/test_shipped_weights.py's business.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from convert.convert import convert_net
from jaxnsfw.config import OPEN_NSFW
from jaxnsfw.model import OpenNSFW, layer_outputs, variable_shapes
from tests import caffe_semantics as caffe

REPO = Path(__file__).resolve().parents[2]
PROTOTXT = REPO / "weights" / "deploy.prototxt"
CAFFEMODEL = REPO / "weights" / "resnet_50_1by2_nsfw.caffemodel"


@pytest.fixture(scope="module")
def real():
    return convert_net(PROTOTXT, CAFFEMODEL)


def test_real_model_is_open_nsfw(real):
    variables, config = real
    assert config == OPEN_NSFW  # eps included: caffe.proto's float32 1e-5 reads back as 1e-05
    flat = traverse_util.flatten_dict(variables)
    expected = traverse_util.flatten_dict(variable_shapes(config))
    assert {k: v.shape for k, v in flat.items()} == {k: v.shape for k, v in expected.items()}
    assert len([k for k in flat if k[0] == "batch_stats"]) == 2 * 53
    # Every stored value becomes a variable, except the 53 BatchNorm factors (folded into mean/var).
    stored = caffe.read_weights(CAFFEMODEL)
    assert sum(v.size for v in flat.values()) == sum(b.size for blobs in stored.values() for b in blobs) - 53


def test_real_model_matches_caffe_reference(real):
    variables, config = real
    # Caffe's data blob: BGR 0..255 minus the mean (104, 117, 123).
    data = np.random.default_rng(7).uniform(0, 255, (1, 3, 224, 224)).astype(np.float32)
    data -= np.array([104, 117, 123], np.float32)[None, :, None, None]
    reference = caffe.forward_files(PROTOTXT, CAFFEMODEL, data)
    output, flax_layers = layer_outputs(OpenNSFW(config), variables, jnp.asarray(np.transpose(data, (0, 2, 3, 1))))
    np.testing.assert_allclose(output.logits, reference.blobs["fc_nsfw"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(output.probs, reference.blobs["prob"], rtol=1e-5, atol=1e-6)
    assert reference.blobs["pool1"].shape == (1, 64, 56, 56)  # ceil((112 - 3) / 2) + 1
    for name, want in reference.layer_outputs.items():
        if name == "data":
            continue
        want = np.transpose(want, (0, 2, 3, 1)) if want.ndim == 4 else want
        got = np.asarray(flax_layers[name])
        assert got.shape == want.shape, name
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale, err_msg=name)
