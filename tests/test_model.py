"""Network parity: fed Caffe's own input blob, the Flax model gives Caffe's numbers.

The input blob is float32(BGR centre crop of Caffe's 256x256 uint8 image) - mean, exactly as
the reference records it, so these tests exercise the network alone."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnsfw import preprocess
from jaxnsfw.model import caffe_blob_writer, layer_outputs

EXACT_TOLERANCE = 1e-6  # the bar: |nsfw - caffe| <= 1e-6 on every reference image
# The default path (BatchNorm folded into the convolutions in float64) measured 5.8e-7 at worst.
FOLDED_TOLERANCE = 1e-6
# Caffe's layers one by one in float32 sum convolutions in another order than OpenBLAS; measured
# worst 1.7e-6 (pixel_1x1, a flat image whose activations cancel in BatchNorm), 9.3e-7 elsewhere.
LAYERED_TOLERANCE = 2e-6

# The blobs the reference recorded: after a full forward pass, or (layer_out/) each layer's own output
# before later in-place layers overwrote it.
RECORDED_BLOBS = ("conv_1", "pool1", "eltwise_stage0_block2", "eltwise_stage1_block3", "eltwise_stage2_block5",
                  "eltwise_stage3_block2", "pool", "layer_out/bn_1", "layer_out/eltwise_stage3_block2")


def _producing_layer(blob: str) -> str:
    return blob[len("layer_out/"):] if blob.startswith("layer_out/") else caffe_blob_writer(blob)


def _keys_with_inputs(npz: dict) -> list[str]:
    return sorted(key[: -len("/rgb256_u8")] for key in npz if key.endswith("/rgb256_u8"))


def _caffe_inputs(npz, keys) -> np.ndarray:
    return np.stack([preprocess.caffe_input(npz[f"{key}/rgb256_u8"]) for key in keys])


def test_input_blob_is_float_crop_minus_mean(shared_reference):
    with np.load(shared_reference / "blobs.npz") as blobs:
        for key in ("skimage__chelsea", "plasma__Autumn_2560x1600"):
            expected = blobs[f"{key}/data"][0].transpose(1, 2, 0)
            np.testing.assert_array_equal(preprocess.caffe_input(blobs[f"{key}/rgb256_u8"]), expected)


def test_exact_mode_matches_caffe_within_1e6_on_golden_images(exact_classifier, golden):
    keys = _keys_with_inputs(golden)
    scores = exact_classifier.score_inputs(_caffe_inputs(golden, keys))
    caffe = np.array([golden[f"{key}/prob"][0, 1] for key in keys])
    assert len(keys) >= 15
    assert np.abs(scores - caffe).max() <= EXACT_TOLERANCE


@pytest.mark.parametrize("path, tolerance", [("folded", FOLDED_TOLERANCE), ("layered", LAYERED_TOLERANCE)])
def test_float32_paths_match_caffe_on_golden_images(classifier, layered_classifier, golden, path, tolerance):
    model = classifier if path == "folded" else layered_classifier
    keys = _keys_with_inputs(golden)
    output = model.forward(_caffe_inputs(golden, keys))
    caffe_probs = np.stack([golden[f"{key}/prob"][0] for key in keys])
    caffe_logits = np.stack([golden[f"{key}/fc_nsfw"][0] for key in keys])
    assert np.abs(output.probs - caffe_probs).max() <= tolerance
    np.testing.assert_allclose(output.logits, caffe_logits, rtol=0, atol=5e-5)


def test_the_default_float32_path_folds_batch_norm_and_the_exact_path_does_not(classifier, exact_classifier):
    assert classifier.folded and not exact_classifier.folded
    params = classifier.variables["params"]
    assert "batch_stats" not in classifier.variables
    assert not any(name.startswith(("bn_", "scale_")) for name in params)
    assert {"bn_1", "scale_1"} <= set(exact_classifier.variables["params"]) | set(exact_classifier.variables["batch_stats"])


def test_folding_is_batch_norm_and_scale_applied_to_kernel_and_bias(layered_classifier):
    from jaxnsfw.model import fold_batch_norm

    variables = jax.tree.map(np.asarray, layered_classifier.variables)
    folded = fold_batch_norm(variables, layered_classifier.config)["params"]["conv_stage1_block0_branch2b"]
    conv = variables["params"]["conv_stage1_block0_branch2b"]
    bn = variables["batch_stats"]["bn_stage1_block0_branch2b"]
    scale = variables["params"]["scale_stage1_block0_branch2b"]
    a = scale["scale"].astype(np.float64) / np.sqrt(bn["var"].astype(np.float64) + layered_classifier.config.batch_norm_eps)
    np.testing.assert_allclose(folded["kernel"], conv["kernel"] * a, rtol=1e-6)
    np.testing.assert_allclose(folded["bias"], (conv["bias"] - bn["mean"]) * a + scale["bias"], rtol=1e-5, atol=1e-6)


def test_one_by_one_convolutions_as_matrix_products_equal_xla_convolutions():
    import flax.linen as nn

    from jaxnsfw.model import PRECISION, PointwiseConv

    x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 9, 16))
    for stride in (1, 2):
        conv = nn.Conv(8, (1, 1), strides=(stride, stride), padding="VALID", precision=PRECISION)
        variables = conv.init(jax.random.PRNGKey(1), x)
        dot = PointwiseConv(8, stride, PRECISION, jnp.float32)
        np.testing.assert_allclose(dot.apply(variables, x), conv.apply(variables, x), rtol=1e-6, atol=1e-6)


def test_model_exposes_embedding_logits_and_probabilities(classifier, golden):
    output = classifier.forward(_caffe_inputs(golden, ["skimage__chelsea"]))
    assert output.embedding.shape == (1, 1024)
    assert output.logits.shape == output.probs.shape == (1, 2)
    assert (output.embedding >= 0).all()  # the global average of ReLU outputs
    np.testing.assert_allclose(output.probs.sum(axis=1), 1.0, rtol=1e-6)
    # fc_nsfw is an affine map of the embedding: the logits follow from it and the weights.
    fc = classifier.variables["params"]["fc_nsfw"]
    np.testing.assert_allclose(output.embedding @ np.asarray(fc["kernel"]) + np.asarray(fc["bias"]),
                               output.logits, rtol=1e-5, atol=1e-5)


def _relative_error(mine: np.ndarray, caffe: np.ndarray) -> tuple[float, float]:
    diff = np.abs(mine - caffe).max()
    return float(diff), float(diff / np.abs(caffe).max())


def _layer_report(classifier, data_nchw: np.ndarray, blobs: dict[str, np.ndarray]) -> dict[str, tuple]:
    """Max abs and relative error per recorded Caffe blob (NCHW, possibly a channel prefix)."""
    _, outputs = layer_outputs(classifier.model, classifier.variables, data_nchw.transpose(0, 2, 3, 1))
    report = {}
    for blob, caffe in blobs.items():
        mine = np.asarray(outputs[_producing_layer(blob)]).transpose(0, 3, 1, 2)[:, : caffe.shape[1]]
        report[blob] = _relative_error(mine, caffe)
    return report


def test_every_recorded_layer_agrees_with_caffe_on_golden_blobs(layered_classifier, golden):
    key = "skimage__astronaut"
    data = preprocess.caffe_input(golden[f"{key}/rgb256_u8"])[None].transpose(0, 3, 1, 2)
    blobs = {blob: golden[f"{key}/{blob}"] for blob in RECORDED_BLOBS}
    report = _layer_report(layered_classifier, data, blobs)
    for blob, (abs_err, rel_err) in report.items():
        print(f"{blob:34s} max abs {abs_err:.3g}  relative {rel_err:.3g}")
    assert max(rel for _, rel in report.values()) < 1e-5, report


@pytest.mark.slow
def test_exact_mode_matches_caffe_within_1e6_on_every_reference_image(exact_classifier, shared_reference):
    scores = json.loads((shared_reference / "scores.json").read_text())
    with np.load(shared_reference / "scores.npz") as npz:
        npz = dict(npz)
    keys = _keys_with_inputs(npz)
    mine = exact_classifier.score_inputs(_caffe_inputs(npz, keys))
    caffe = np.array([scores[key]["nsfw"] for key in keys])
    diff = np.abs(mine - caffe)
    print(f"{len(keys)} images: max |nsfw - caffe| {diff.max():.3g} ({keys[diff.argmax()]})")
    assert len(keys) == 75
    assert diff.max() <= EXACT_TOLERANCE


def test_every_recorded_layer_agrees_with_caffe_on_all_blob_images(layered_classifier, shared_reference):
    for name in ("blobs.npz", "blobs_layer_by_layer.npz"):
        with np.load(shared_reference / name) as npz:
            npz = dict(npz)
        for key in sorted({k.split("/")[0] for k in npz if f"{k.split('/')[0]}/data" in npz}):
            blobs = {blob: npz[f"{key}/{blob}"] for blob in RECORDED_BLOBS if f"{key}/{blob}" in npz}
            report = _layer_report(layered_classifier, npz[f"{key}/data"], blobs)
            print(key, {blob: f"{rel:.2g}" for blob, (_, rel) in report.items()})
            assert max(rel for _, rel in report.values()) < 1e-5, (key, report)


def test_caffe_blob_writer_names_the_last_layer_that_writes_each_blob():
    from convert import caffe_io

    from conftest import REPO

    net = caffe_io.read_prototxt(REPO / "weights" / "deploy.prototxt")
    last_writer = {}
    for layer in net.layer:
        for top in layer.top:
            last_writer[top] = layer.name
    assert len(last_writer) > 70
    assert {blob: caffe_blob_writer(blob) for blob in last_writer} == last_writer
