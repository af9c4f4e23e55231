"""The backward rules: saliency, guided backprop and deconvnet are what their formulas say, computed
by hand in NumPy on a small net; max-pool switches behave like Caffe's; OpenNSFW's hooks change
nothing by default and reach every ReLU when set."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxnsfw import checkpoint
from jaxnsfw.config import OPEN_NSFW, ResNetConfig
from jaxnsfw.explain.backprop import (NSFW_LOGIT, RELU_RULES, SFW_LOGIT, Network, Target, deconvnet_relu, guided_relu,
                                      input_gradients)
from jaxnsfw.explain.gradcam import layer_activations_and_gradients
from jaxnsfw.model import OpenNSFW, layer_outputs, variable_shapes
from jaxnsfw.pooling import caffe_max_pool
from tests.explain.toys import TINY_INPUT_SHAPE, TinyNet, tiny_backward_numpy, tiny_variables

METHODS = tuple(RELU_RULES)


def _tiny_input(seed: int) -> np.ndarray:
    return np.random.default_rng(seed + 1).normal(size=TINY_INPUT_SHAPE).astype(np.float32)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), logit=st.sampled_from([0, 1]))
def test_each_rule_matches_its_formula_computed_by_hand(seed, logit):
    variables = tiny_variables(seed)
    x = _tiny_input(seed)
    network = Network(TinyNet(), variables)
    for method in METHODS:
        mine = input_gradients(network, x[None], method, Target(None, logit))[0]
        expected = tiny_backward_numpy(variables, x.astype(np.float64), method, logit)
        np.testing.assert_allclose(mine, expected, rtol=1e-4, atol=1e-5, err_msg=method)


def test_the_three_rules_give_different_signals():
    """On this net (seed 9) no signal is zero and the rules disagree, so the formula test above
    can tell them apart (and the implementation agrees with each on it)."""
    variables, x = tiny_variables(9), _tiny_input(9)
    signals = {m: tiny_backward_numpy(variables, x.astype(np.float64), m, 1) for m in METHODS}
    network = Network(TinyNet(), variables)
    for method, signal in signals.items():
        assert np.abs(signal).max() > 1
        np.testing.assert_allclose(input_gradients(network, x[None], method)[0], signal, rtol=1e-4, atol=1e-5)
    for a in METHODS:
        for b in METHODS:
            if a < b:
                assert np.abs(signals[a] - signals[b]).max() > 1e-3, (a, b)


def test_saliency_is_the_plain_gradient_of_the_logit():
    variables, x = tiny_variables(5), _tiny_input(5)
    logit = lambda data: TinyNet().apply(variables, data).logits[0, 1]  # noqa: E731
    expected = jax.grad(logit)(jnp.asarray(x[None]))
    mine = input_gradients(Network(TinyNet(), variables), x[None], "saliency")
    np.testing.assert_allclose(mine, expected, rtol=1e-5, atol=1e-6)


def test_a_channel_target_projects_its_single_strongest_activation():
    """Deconvnet from channel o of relu_1: all but the strongest activation are zeroed, so the
    signal reaching the input is conv kernel o placed at that position (relu passes 1 > 0)."""
    variables, x = tiny_variables(7), _tiny_input(7)
    for channel in range(3):
        z = np.asarray(layer_outputs(TinyNet(), variables, x[None])[1]["relu_1"])[0, :, :, channel]
        i, j = np.unravel_index(np.argmax(z), z.shape)
        expected = np.zeros(TINY_INPUT_SHAPE)
        expected[i:i + 3, j:j + 3] = np.asarray(variables["params"]["conv_1"]["kernel"])[..., channel]
        mine = input_gradients(Network(TinyNet(), variables), x[None], "deconvnet", Target("relu_1", channel))[0]
        np.testing.assert_allclose(mine, expected, rtol=1e-6, atol=1e-7)


def test_relu_rules_are_plain_relus_going_forward():
    x = jnp.linspace(-2, 2, 9)
    for rule in (deconvnet_relu, guided_relu):
        np.testing.assert_array_equal(rule(x), jnp.maximum(x, 0))


def test_max_pool_switches_route_the_signal_to_the_first_maximum_like_caffe():
    """Caffe's MaxPoolForward keeps the first maximum of a window (strict >, row-major); the VJP of
    caffe_max_pool sends each window's whole signal to that same element, also on ties."""
    ties = jnp.array([[0.0, 1, 1], [1, 0, 1], [1, 1, 0]])[None, :, :, None]
    signal = jax.grad(lambda x: caffe_max_pool(x, 3, 1).sum())(ties)[0, :, :, 0]
    np.testing.assert_array_equal(signal, [[0, 1, 0], [0, 0, 0], [0, 0, 0]])
    flat = jax.grad(lambda x: caffe_max_pool(x, 3, 2).sum())(jnp.ones((1, 5, 5, 1)))[0, :, :, 0]
    expected = np.zeros((5, 5))
    expected[0, 0] = expected[0, 2] = expected[2, 0] = expected[2, 2] = 1  # window starts 0 and 2
    np.testing.assert_array_equal(flat, expected)


SMALL = ResNetConfig(input_size=64, stem_features=8, stage_sizes=(1, 1), stage_widths=(4, 8), stage_strides=(1, 2),
                     head_pool_kernel=8)


@pytest.fixture(scope="module")
def small_model():
    model = OpenNSFW(SMALL)
    data = jnp.asarray(np.random.default_rng(0).normal(0, 50, (2, 64, 64, 3)), jnp.float32)
    # Random weights, BatchNorm statistics and Scale values (positive where they must be), filled
    # in from the variable shapes: no initializer needs compiling.
    shapes = jax.eval_shape(model.init, jax.random.key(0), data)
    rng = np.random.default_rng(1)

    def fill(leaf):
        if leaf.ndim == 1:
            return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), jnp.float32)
        fan_in = np.prod(leaf.shape[:-1])
        return jnp.asarray(rng.normal(0, 1 / np.sqrt(fan_in), leaf.shape), jnp.float32)

    return model, jax.tree.map(fill, shapes), data


def test_hooks_leave_the_variable_tree_unchanged():
    shipped = jax.tree.map(lambda a: (a.shape, a.dtype), checkpoint.read_checkpoint()[0])
    expected = jax.tree.map(lambda a: (a.shape, a.dtype), variable_shapes(OPEN_NSFW))
    assert shipped == expected
    data = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    hooked = jax.eval_shape(OpenNSFW(OPEN_NSFW, relu=guided_relu).init, jax.random.key(0), data)
    assert jax.tree.structure(hooked) == jax.tree.structure(variable_shapes(OPEN_NSFW))
    perturbed = jax.eval_shape(OpenNSFW(OPEN_NSFW, perturbed_layers=("relu_stage3_block2",)).init,
                               jax.random.key(0), data)
    assert set(perturbed) == {"params", "batch_stats", "perturbations"}
    assert perturbed["perturbations"]["relu_stage3_block2"].shape == (1, 7, 7, 1024)


def test_custom_relu_rules_do_not_change_the_forward_pass(small_model):
    model, variables, data = small_model
    plain = jax.jit(model.apply)(variables, data)
    for rule in (deconvnet_relu, guided_relu):
        hooked = jax.jit(model.clone(relu=rule).apply)(variables, data)
        np.testing.assert_array_equal(hooked.logits, plain.logits)


def test_the_relu_hook_reaches_every_relu_layer(small_model):
    model, variables, data = small_model
    output, layers = jax.jit(lambda v, x: layer_outputs(model.clone(relu=jnp.zeros_like), v, x))(variables, data)
    relus = [name for name in layers if name.startswith("relu_")]
    assert len(relus) == 1 + 2 * 3  # relu_1, then branch2a, branch2b and the output of each block
    assert all(not np.asarray(layers[name]).any() for name in relus)
    # Everything after the last ReLU is affine: with all ReLUs zero the logits are fc_nsfw's bias.
    np.testing.assert_allclose(output.logits, np.broadcast_to(variables["params"]["fc_nsfw"]["bias"], (2, 2)))


def test_gradcam_through_opennsfw_weighs_the_last_relu_by_the_classifier_weights(small_model):
    """After the last ReLU come only the global average pool and fc_nsfw, so d logit_c / d A_k is
    fc_nsfw[k, c] / (h * w) at every position: Grad-CAM is CAM here, through the perturbation hook."""
    model, variables, data = small_model
    network = Network(model, variables, batch_size=2)
    for target in (NSFW_LOGIT, SFW_LOGIT):
        activations, gradients = layer_activations_and_gradients(network, np.asarray(data), "relu_stage1_block0",
                                                                 target)
        assert activations.shape == gradients.shape == (2, 8, 8, 32)
        weights = np.asarray(variables["params"]["fc_nsfw"]["kernel"])[:, target.index] / 64
        np.testing.assert_allclose(gradients, np.broadcast_to(weights, gradients.shape), rtol=1e-5, atol=1e-8)
        _, layers = layer_outputs(model, variables, data)
        np.testing.assert_allclose(activations, layers["relu_stage1_block0"], rtol=1e-4, atol=1e-4)  # jit vs eager
