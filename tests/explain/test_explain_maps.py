"""Every explanation of a model that responds only to a red square points at the square, on a
non-square image (300 x 500) where a swapped axis, a missed crop offset or a wrong 256 -> 224
mapping would put the peak somewhere else. Grad-CAM matches its definition computed by hand."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from jaxnsfw.explain import (ImageScorer, Network, gradcam, gradcam_map, guided_backprop_map, occlusion_map,
                             reference_input, saliency_map, window_map)
from jaxnsfw.explain.gradcam import layer_activations_and_gradients
from jaxnsfw.explain.occlusion import MEAN_RGB, fill_image
from jaxnsfw.explain.scoring import score_variants
from jaxnsfw.model import layer_outputs
from tests.explain.toys import RED_CELL_WEIGHT, RedSquareNet, image_with_red_square, red_square_variables, redness

SHAPE = (300, 500)
SQUARE = (90, 310, 40)  # top, left, size: right of centre, above the middle, away from the rim


@pytest.fixture(scope="module")
def network() -> Network:
    return Network(RedSquareNet(), red_square_variables())


@pytest.fixture(scope="module")
def scorer(network) -> ImageScorer:
    import jax

    apply = jax.jit(network.module.apply)
    return ImageScorer(reference_input, lambda inputs: np.asarray(apply(network.variables, inputs).probs[:, 1]))


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return image_with_red_square(SHAPE, *SQUARE)


def _in_square(row: int, col: int, margin: int = 0) -> bool:
    top, left, size = SQUARE
    return top - margin <= row < top + size + margin and left - margin <= col < left + size + margin


def _peak(values: np.ndarray) -> tuple[int, int]:
    return np.unravel_index(np.nanargmax(values), values.shape)


def test_the_toy_model_scores_the_square_and_nothing_else(scorer, image):
    plain = image_with_red_square(SHAPE, 0, 0, 0)
    scores = scorer.score_inputs(np.stack([reference_input(image), reference_input(plain)]))
    assert scores[0] > 0.5 and scores[1] == pytest.approx(1 / (1 + np.exp(2)), rel=1e-5)


def test_occlusion_map_peaks_on_the_square(scorer, image):
    drop = occlusion_map(image, scorer, box=40, stride=20)
    assert drop.shape == SHAPE and np.isfinite(drop).all()
    assert _in_square(*_peak(drop))
    assert drop[_peak(drop)] > 0.1  # base score 0.88; no 40 px box on the 20 px grid hides all of the square
    assert np.abs(drop[:, :200]).max() < 1e-6  # nothing left of column 200 matters


@pytest.mark.parametrize("fill", ["grey", "mean", "black", "blur"])
def test_every_fill_hides_the_square(scorer, image, fill):
    drop = occlusion_map(image, scorer, box=60, stride=30, fill=fill, blur_radius=30)
    assert _in_square(*_peak(drop), margin=20)


def test_fills_are_the_named_colours_or_a_blur():
    rgb = image_with_red_square((40, 40), 10, 10, 10)
    assert (fill_image(rgb, "grey", 0) == 128).all() and (fill_image(rgb, "black", 0) == 0).all()
    assert (fill_image(rgb, "mean", 0) == np.array(MEAN_RGB, np.uint8)).all() and MEAN_RGB == (123, 117, 104)
    blurred = fill_image(rgb, "blur", 4).astype(float)
    assert blurred[:, :, 0].std() < rgb[:, :, 0].std() / 2
    with pytest.raises(ValueError, match="fill"):
        fill_image(rgb, "pink", 0)


def test_variants_are_scored_in_batches_not_one_by_one(image):
    calls = []

    def score_inputs(inputs):
        calls.append(len(inputs))
        return np.zeros(len(inputs))

    scores = score_variants(ImageScorer(lambda rgb: rgb[:1, :1], score_inputs, batch_size=32), lambda i: image, 70)
    assert len(scores) == 70 and calls == [32, 32, 6]


def test_a_classifier_scorer_sends_device_sized_batches_through_forward():
    from types import SimpleNamespace

    from jaxnsfw.explain.scoring import classifier_scorer

    calls = []

    def forward(inputs):
        calls.append(len(inputs))
        probs = np.stack([np.zeros(len(inputs)), inputs[:, 0, 0, 0]], axis=1)
        return SimpleNamespace(probs=probs)

    inputs = np.arange(20, dtype=np.float32).reshape(20, 1, 1, 1)
    scores = classifier_scorer(SimpleNamespace(forward=forward), device_batch=8).score_inputs(inputs)
    np.testing.assert_array_equal(scores, np.arange(20))
    assert calls == [8, 8, 4]
    classifier_scorer(SimpleNamespace(forward=forward), device_batch=None).score_inputs(inputs)
    assert calls[-1] == 20


def test_window_map_peaks_on_the_square(scorer, image):
    scores = window_map(image, scorer, box=80, stride=20)
    assert scores.shape == SHAPE
    assert _in_square(*_peak(scores))
    # Every pixel but a thin rim (what no window's centre crop shows) is measured.
    assert np.isfinite(scores[5:-5, 5:-5]).all() and np.isnan(scores[0]).all()


@pytest.mark.parametrize("explain", [saliency_map, guided_backprop_map,
                                     functools.partial(gradcam_map, layer="relu_cells")])
def test_gradient_maps_land_on_the_square_in_the_source_image(network, image, explain):
    values = explain(image, network)
    assert values.shape == SHAPE
    assert _in_square(*_peak(values), margin=4)
    top, left, size = SQUARE
    outside = values.copy()
    outside[max(top - 20, 0):top + size + 20, left - 20:left + size + 20] = 0
    assert outside.max() < 0.05 * values.max()


def _bilinear_upsample(values: np.ndarray, size: int) -> np.ndarray:
    """Half-pixel-centred bilinear upsampling of a square map, edges held: written out in NumPy."""
    n = values.shape[0]
    coords = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    low = np.floor(coords).astype(int)
    high = np.minimum(low + 1, n - 1)
    frac = coords - low
    rows = values[low] * (1 - frac)[:, None] + values[high] * frac[:, None]
    return rows[:, low] * (1 - frac)[None] + rows[:, high] * frac[None]


def test_gradcam_is_relu_of_the_gradient_weighted_sum_of_the_layer(network, image):
    """For RedSquareNet's relu_cells layer A (28x28x2): d nsfw_logit / d A_k = fc[k, nsfw] / 784 at
    every position, so alpha = fc[:, nsfw] / 784 and the CAM is ReLU(A @ alpha), by hand."""
    data = reference_input(image)[None]
    cells = redness(data).reshape(1, 28, 8, 28, 8).max(axis=(2, 4))  # 8x8 max pool of the redness
    np.testing.assert_allclose(np.asarray(layer_outputs(network.module, network.variables, data)[1]["relu_cells"])
                               [..., 0], cells, rtol=1e-5, atol=1e-3)
    activations, gradients = layer_activations_and_gradients(network, data, "relu_cells")
    alpha = np.array([RED_CELL_WEIGHT, 0.0]) / (28 * 28)
    np.testing.assert_allclose(gradients, np.broadcast_to(alpha, gradients.shape), rtol=1e-6)
    expected = np.maximum(cells * alpha[0], 0)[0]
    cam = gradcam(network, data, "relu_cells")[0]
    np.testing.assert_allclose(cam, _bilinear_upsample(expected, 224), rtol=1e-4, atol=1e-6)


def test_gradcam_refuses_a_layer_that_is_not_a_relu(network, image):
    with pytest.raises(ValueError, match="ReLU layer"):
        gradcam(network, reference_input(image)[None], "pool1")
