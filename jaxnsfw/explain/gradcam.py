"""Grad-CAM (Selvaraju et al. 2017): which places in a late feature map the target leans on.

    cam = ReLU( sum_k alpha_k A_k ),   alpha_k = mean over positions of d target / d A_k

A is a ReLU layer's output (default relu_stage3_block2, the last stage, 7x7 for a 224 input). The
gradient with respect to A is taken through the same module and variables via Flax's `perturb`:
the module is cloned with perturbed_layers=(layer,), which adds a zero 'perturbations' variable to
that layer's output, and the gradient with respect to that zero is d target / d A. The map is
upsampled bilinearly (half-pixel centres) to the model input, then drawn back on the source image.

For open_nsfw, A is followed only by the global average pool and fc_nsfw, so alpha_k is
fc_nsfw[k, target] / 49 and Grad-CAM coincides with CAM (Zhou et al. 2016); the tests check that.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnsfw.constants import GRADCAM_DEFAULT_LAYER as DEFAULT_LAYER
from jaxnsfw.explain.backprop import NSFW_LOGIT, Network, Target, in_padded_batches, select_target
from jaxnsfw.explain.geometry import input_map_to_source
from jaxnsfw.explain.scoring import source_rgb
from jaxnsfw.model import layer_outputs


def _perturbation_shape(module: nn.Module, layer: str, inputs: jax.Array) -> jax.ShapeDtypeStruct:
    """The shape of `layer`'s output, from the variables `module` (perturbing it) would create."""
    created = jax.eval_shape(module.init, jax.random.key(0), jax.ShapeDtypeStruct(inputs.shape, inputs.dtype))
    perturbations = created.get("perturbations", {})
    if layer not in perturbations:
        raise ValueError(f"Grad-CAM needs a ReLU layer of the model (its `relu` hook names them), not {layer!r}")
    return perturbations[layer]


@functools.lru_cache(maxsize=64)
def _gradcam_function(module: nn.Module, layer: str, target: Target):
    """jit(variables, inputs -> (activations A, d target / d A)), built once per key."""
    perturbed = module.clone(perturbed_layers=(layer,))

    def activations_and_gradients(variables, inputs):
        shape = _perturbation_shape(perturbed, layer, inputs)

        def batch_total(delta):
            with_delta = {**variables, "perturbations": {layer: delta}}
            output, layers = layer_outputs(perturbed, with_delta, inputs)
            return select_target(output, layers, target).sum(), layers[layer]

        gradients, activations = jax.grad(batch_total, has_aux=True)(jnp.zeros(shape.shape, shape.dtype))
        return activations, gradients

    return jax.jit(activations_and_gradients)


def layer_activations_and_gradients(network: Network, inputs: np.ndarray, layer: str = DEFAULT_LAYER,
                                    target: Target = NSFW_LOGIT) -> tuple[np.ndarray, np.ndarray]:
    """((N, h, w, K) the layer's output A, (N, h, w, K) d target / d A), batched."""
    function = _gradcam_function(network.module, layer, target)
    return in_padded_batches(function, network.variables, inputs, network.batch_size)


def gradcam_from(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """(N, h, w): ReLU(sum_k alpha_k A_k) with alpha_k the spatial mean of d target / d A_k."""
    alphas = gradients.mean(axis=(1, 2))
    return np.maximum(np.einsum("nhwk,nk->nhw", activations, alphas), 0).astype(np.float32)


def upsample(maps: np.ndarray | jax.Array, size: tuple[int, int]) -> np.ndarray:
    """(N, h, w) -> (N, *size), bilinear with half-pixel centres (edges held constant)."""
    maps = jnp.asarray(maps, jnp.float32)
    return np.asarray(jax.image.resize(maps, (maps.shape[0], *size), "bilinear"))


def gradcam(network: Network, inputs: np.ndarray, layer: str = DEFAULT_LAYER,
            target: Target = NSFW_LOGIT) -> np.ndarray:
    """(N, H, W) Grad-CAM upsampled to the model inputs' size."""
    activations, gradients = layer_activations_and_gradients(network, inputs, layer, target)
    return upsample(gradcam_from(activations, gradients), np.shape(inputs)[1:3])


def gradcam_map(image, network: Network, layer: str = DEFAULT_LAYER, target: Target = NSFW_LOGIT) -> np.ndarray:
    """(H, W) Grad-CAM of one image, drawn back on the source image."""
    rgb = source_rgb(image)
    cam = gradcam(network, network.prepare(rgb)[None], layer, target)[0]
    return input_map_to_source(cam, rgb.shape[:2], network.geometry)
