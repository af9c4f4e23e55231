"""Gradients of the NSFW score with respect to the source pixels, through the device preprocessing:
the straight-through forward pass is still Pillow's exactly, the smooth pipeline's gradient matches
its finite differences, and a gradient step moves the score the real Pillow pipeline computes."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxnsfw.jaxprep import pipeline, quantize
from jaxnsfw.jaxprep.jpeg import JpegConfig, jpeg_round_trip
from jaxnsfw.jaxprep.surrogate import Mode

from jaxprep_reference import IMAGES

CONFIG = pipeline.PipelineConfig()


@pytest.fixture(scope="module")
def source():
    """A 512x512 photo (score ~0.05) as the padded float32 batch of one, with its tables."""
    rgb = pipeline.decoded_rgb(IMAGES / "astronaut_lossy.webp")
    bucket = pipeline.bucket_for(*rgb.shape[:2], CONFIG)
    tables = pipeline.batch_tables([rgb.shape[:2]], bucket, CONFIG)
    return rgb, bucket, tables, jnp.asarray(pipeline.pad_batch([rgb], bucket, 1, np.float32))


@pytest.fixture(scope="module")
def score_fn(classifier, source):
    _, bucket, tables, _ = source

    def score(pixels, mode, config=CONFIG):
        return pipeline.scores_from_padded(classifier.model, classifier.variables, pixels, tables,
                                           bucket.horizontal_first, config, mode)[0]
    return score


@pytest.fixture(scope="module")
def straight_through(score_fn, source):
    value, grad = jax.jit(jax.value_and_grad(functools.partial(score_fn, mode=Mode.STRAIGHT_THROUGH)))(source[3])
    return float(value), np.asarray(grad)


@pytest.fixture(scope="module")
def smooth(score_fn, source):
    fn = jax.jit(functools.partial(score_fn, mode=Mode.SMOOTH))
    value, grad = jax.jit(jax.value_and_grad(functools.partial(score_fn, mode=Mode.SMOOTH)))(source[3])
    return fn, float(value), np.asarray(grad)


def test_straight_through_forward_pass_is_the_exact_pipeline(classifier, source, straight_through):
    rgb = source[0]
    assert abs(straight_through[0] - classifier.score(Image.fromarray(rgb))) <= 1e-6


def test_gradient_is_defined_everywhere_and_zero_on_padding(source, straight_through):
    rgb, _, _, pixels = source
    grad = straight_through[1]
    assert grad.shape == pixels.shape and np.isfinite(grad).all()
    assert np.abs(grad[0, :rgb.shape[0], :rgb.shape[1]]).max() > 0
    assert not grad[0, rgb.shape[0]:].any() and not grad[0, :, rgb.shape[1]:].any()


@pytest.mark.parametrize("direction", ["random", "gradient_sign"])
def test_smooth_gradient_matches_finite_differences(source, smooth, direction):
    """Central differences of the smooth pipeline (no rounding anywhere) along a direction."""
    pixels = source[3]
    fn, _, grad = smooth
    rng = np.random.default_rng(0)
    d = np.sign(grad) if direction == "gradient_sign" else rng.choice([-1.0, 1.0], grad.shape)
    # A sign step moves the score fast. Along a random +-1 direction (norm ~890) the network's
    # curvature shows from eps 1 on (measured: 0.7% at 0.25, 0.8% at 0.5, 2.6% at 1, 15% at 2).
    eps = 0.02 if direction == "gradient_sign" else 0.5
    numeric = (float(fn(pixels + eps * d)) - float(fn(pixels - eps * d))) / (2 * eps)
    analytic = float((grad * d).sum())
    assert abs(numeric - analytic) <= 0.02 * abs(analytic)


def test_straight_through_gradient_points_like_the_smooth_one(straight_through, smooth):
    """Not the same vector (evaluated at the exact pipeline's values instead of the smooth ones), but
    the same general direction (0.34 measured on this image)."""
    st, sm = straight_through[1].ravel(), smooth[2].ravel()
    assert st @ sm / (np.linalg.norm(st) * np.linalg.norm(sm)) > 0.2


def test_a_gradient_step_moves_pillows_score(classifier, source, straight_through):
    """One grey level along sign(gradient), scored by the CPU reference pipeline (Pillow + network):
    up raises the score and down lowers it (0.046 -> 0.35 and 0.0024 measured)."""
    rgb = source[0]
    direction = np.sign(straight_through[1][0, :rgb.shape[0], :rgb.shape[1]])
    before = classifier.score(Image.fromarray(rgb))
    up, down = (classifier.score(Image.fromarray(np.clip(rgb + sign * direction, 0, 255).astype(np.uint8)))
                for sign in (1, -1))
    assert up > 2 * before and down < before / 2


def quantizer_slope(gradient, table):
    """d(quantized value)/d(quotient) of quantize_smooth, as a function of the quotient."""
    table = jnp.float32(table)
    return jax.vmap(jax.grad(lambda q: quantize.quantize_smooth(8.0 * table * q, table, gradient)))


def test_cubic_rounding_gradient_vanishes_at_integers_and_peaks_between():
    slope = quantizer_slope(quantize.QuantizationGradient.CUBIC, 1.0)
    np.testing.assert_allclose(slope(jnp.array([0.0, 0.25, 0.5, -3.0])), [0.0, 3 * 0.25**2, 3 * 0.5**2, 0.0],
                               atol=1e-6)


def test_near_boundary_gradient_is_one_at_a_rounding_boundary_and_decays_with_the_distance_in_coefficients():
    """exp(-gap * q / scale): gap is in quantization steps, so a coarse table (q = 50) leaves
    almost no gradient in the middle of a step while a fine one (q = 2) leaves most of it."""
    quotients = jnp.array([0.5, -1.5, 0.25, 0.0, 3.0])
    gaps = np.array([0.0, 0.0, 0.25, 0.5, 0.5])
    for table in (2.0, 50.0):
        slope = quantizer_slope(quantize.QuantizationGradient.NEAR_BOUNDARY, table)(quotients)
        np.testing.assert_allclose(slope, np.exp(-gaps * table / 2.0), rtol=1e-5)
    straight = quantizer_slope(quantize.QuantizationGradient.STRAIGHT_THROUGH, 50.0)(quotients)
    np.testing.assert_allclose(straight, np.ones(5), rtol=1e-6)


def test_near_boundary_value_is_the_quotient():
    coefficients = jnp.asarray(np.random.default_rng(0).normal(0, 400, (64,)), jnp.float32)
    value = quantize.quantize_smooth(coefficients, jnp.float32(10.0), quantize.QuantizationGradient.NEAR_BOUNDARY)
    np.testing.assert_array_equal(value, coefficients / 80.0)


@pytest.mark.parametrize("gradient", [quantize.QuantizationGradient.CUBIC, quantize.QuantizationGradient.NEAR_BOUNDARY])
def test_quantization_gradient_keeps_the_round_trip_and_changes_its_gradient(gradient):
    rgb = jnp.asarray(np.random.default_rng(1).integers(0, 256, (16, 16, 3)), jnp.float32)
    readout = jnp.asarray(np.random.default_rng(2).normal(size=(16, 16, 3)), jnp.float32)

    def value_and_grad(choice):
        config = JpegConfig(quantization_gradient=choice)
        return jax.value_and_grad(lambda x: jnp.sum(jpeg_round_trip(x, Mode.STRAIGHT_THROUGH, config) * readout))(rgb)

    # One program for both, to compile once.
    (value_ste, grad_ste), (value_other, grad_other) = jax.jit(
        lambda: (value_and_grad(quantize.QuantizationGradient.STRAIGHT_THROUGH), value_and_grad(gradient)))()
    assert value_other == value_ste
    assert np.isfinite(grad_other).all() and np.abs(grad_other).max() > 0
    assert not np.allclose(grad_other, grad_ste)


def test_score_and_gradient_gives_the_reference_score_and_a_gradient_per_source_pixel(classifier):
    rgb = pipeline.decoded_rgb(IMAGES / "skimage__text.png")  # 448x172, not square, greyscale -> RGB
    value, gradient = pipeline.score_and_gradient(rgb, classifier)
    assert gradient.shape == rgb.shape and gradient.dtype == np.float32
    assert abs(value - classifier.score(IMAGES / "skimage__text.png")) <= 1e-6
    assert np.abs(gradient).max() > 0
