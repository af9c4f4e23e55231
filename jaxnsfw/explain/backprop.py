"""Gradient explanations through the model itself: saliency, guided backprop, deconvnet.

All three are one backward pass from a target number to the input pixels; they differ only in
what a ReLU lets through on the way back (g: the signal arriving from above, x: the ReLU's input):

    saliency (Simonyan et al. 2014)          g * [x > 0]             the true gradient
    deconvnet (Zeiler & Fergus 2014)         max(g, 0)               rectify, ignore the forward mask
    guided backprop (Springenberg et al.)    g * [x > 0] * [g > 0]   both

The rules are jax.custom_vjp functions handed to the module's `relu` hook (OpenNSFW(relu=...)), so
the backward pass runs through the same Flax module and the same variables as scoring, jitted and
batched. Everything else keeps its own VJP: convolutions transpose (Zeiler & Fergus' "filtering
with the transposed weights"), BatchNorm/Scale/average pooling are linear, and max pooling routes
each window's signal to the element that won the forward max, which is exactly the deconvnet's
unpooling with switches. On ties XLA's select-and-scatter picks the FIRST maximal element in
row-major window order (tests/explain/test_explain_rules.py checks it), which is also Caffe's switch
(MaxPoolForward keeps the first maximum, comparing with a strict >).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnsfw import batching
from jaxnsfw.constants import CLASS_INDEX
from jaxnsfw.explain.geometry import REFERENCE_GEOMETRY, InputGeometry, input_map_to_source
from jaxnsfw.explain.scoring import reference_input, source_rgb
from jaxnsfw.model import layer_outputs


@jax.custom_vjp
def deconvnet_relu(x: jax.Array) -> jax.Array:
    """ReLU whose backward pass is the deconvnet's: rectify the signal, whatever the forward input."""
    return jnp.maximum(x, 0)


def _deconvnet_forward(x):
    return jnp.maximum(x, 0), None


def _deconvnet_backward(_, g):
    return (jnp.maximum(g, 0),)


deconvnet_relu.defvjp(_deconvnet_forward, _deconvnet_backward)


@jax.custom_vjp
def guided_relu(x: jax.Array) -> jax.Array:
    """ReLU whose backward pass is guided backprop's: only where the input and the signal are positive."""
    return jnp.maximum(x, 0)


def _guided_forward(x):
    return jnp.maximum(x, 0), x


def _guided_backward(x, g):
    return (jnp.where((x > 0) & (g > 0), g, jnp.zeros_like(g)),)


guided_relu.defvjp(_guided_forward, _guided_backward)

# nn.relu's own derivative is 0 at x == 0, i.e. g * [x > 0].
RELU_RULES: dict[str, Callable[[jax.Array], jax.Array]] = {
    "saliency": nn.relu,
    "guided": guided_relu,
    "deconvnet": deconvnet_relu,
}


@dataclasses.dataclass(frozen=True)
class Target:
    """The number an explanation follows, per image.

    layer None: logit `index` (open_nsfw: 0 SFW, 1 NSFW), before the softmax. Otherwise channel
    `index` of the named layer (Caffe's names: relu_*, eltwise_*, pool1, pool, conv_*, ...), at its
    strongest position in the image: Zeiler & Fergus project one strong activation, and argmax
    picks a single one (the first on ties)."""

    layer: str | None = None
    index: int = CLASS_INDEX["nsfw"]

    def describe(self) -> str:
        if self.layer is None:
            names = {i: n for n, i in CLASS_INDEX.items()}
            return f"{names.get(self.index, self.index)} logit"
        return f"{self.layer} channel {self.index}"


NSFW_LOGIT = Target(None, CLASS_INDEX["nsfw"])
SFW_LOGIT = Target(None, CLASS_INDEX["sfw"])


@dataclasses.dataclass(frozen=True, eq=False)
class Network:
    """What gradient explanations need from a model.

    `module` is a Flax module with OpenNSFW's explanation hooks (fields `relu` and
    `perturbed_layers`), whose output has `.logits` and which sows its named layers into
    'intermediates'; `variables` are its weights (used as they are, never copied). `prepare` and
    `geometry` say how a source image becomes an input, to draw maps back on the source."""

    module: nn.Module
    variables: Any
    prepare: Callable[[np.ndarray], np.ndarray] = reference_input
    geometry: InputGeometry = REFERENCE_GEOMETRY
    batch_size: int = 8


def classifier_network(classifier) -> Network:
    """The Network of a jaxnsfw.Classifier: its module and its variables (float32 convolutions;
    explanations do not need the float64 parity mode)."""
    return Network(classifier.model.clone(conv_accumulation="float32"), classifier.variables)


def target_values(module: nn.Module, variables, inputs: jax.Array, target: Target) -> jax.Array:
    """(N,) the target number for each input."""
    return select_target(*layer_outputs(module, variables, inputs), target)


def select_target(output, layers: dict[str, jax.Array], target: Target) -> jax.Array:
    """(N,) the target number, from a forward pass's output and its layers (model.layer_outputs)."""
    if target.layer is None:
        return output.logits[:, target.index]
    if target.layer not in layers:
        raise ValueError(f"no layer named {target.layer!r}; layers: {', '.join(sorted(layers))}")
    activations = layers[target.layer]
    if not 0 <= target.index < activations.shape[-1]:
        raise ValueError(f"{target.layer} has {activations.shape[-1]} channels, not channel {target.index}")
    channel = activations[..., target.index].reshape(activations.shape[0], -1)
    strongest = jnp.argmax(channel, axis=1)
    return jnp.take_along_axis(channel, strongest[:, None], axis=1)[:, 0]


def in_padded_batches(function, variables, inputs: np.ndarray, batch_size: int):
    """function(variables, batch) over `inputs` in batches padded to 1 or `batch_size` images (so at
    most two programs are compiled), results trimmed and brought to the host, concatenated."""
    inputs = np.asarray(inputs, np.float32)
    results = []
    for rows in batching.chunks(len(inputs), batch_size):
        chunk = inputs[rows]
        padded = batching.pad_to(chunk, batching.padded_size(len(chunk), (1, batch_size)))
        result = function(variables, jnp.asarray(padded))
        # n=len(chunk) binds this chunk's size at once (B023); it is no shared mutable default (B008).
        results.append(jax.tree.map(lambda a, n=len(chunk): np.asarray(a[:n]), result))  # noqa: B008
    return jax.tree.map(lambda *parts: np.concatenate(parts), *results)


@functools.lru_cache(maxsize=64)
def _input_gradient_function(module: nn.Module, method: str, target: Target):
    """jit(variables, inputs -> d target / d inputs) with `method`'s ReLU rule, built once per key
    (Flax modules are hashable dataclasses; equal modules share the compiled function)."""
    if method not in RELU_RULES:
        raise ValueError(f"method must be one of {sorted(RELU_RULES)}, got {method!r}")
    explained = module.clone(relu=RELU_RULES[method])

    def batch_total(inputs, variables):
        # Images do not interact (inference BatchNorm), so the gradient of the sum is per image.
        return target_values(explained, variables, inputs, target).sum()

    gradient = jax.grad(batch_total)
    return jax.jit(lambda variables, inputs: gradient(inputs, variables))


def input_gradients(network: Network, inputs: np.ndarray, method: str, target: Target = NSFW_LOGIT) -> np.ndarray:
    """(N, H, W, C): the backward signal reaching each model input under `method`'s ReLU rule
    ('saliency', 'guided' or 'deconvnet'), in the inputs' own layout and channel order."""
    function = _input_gradient_function(network.module, method, target)
    return in_padded_batches(function, network.variables, inputs, network.batch_size)


def pixel_map(gradients: np.ndarray) -> np.ndarray:
    """(N, H, W): the largest |signal| over the colour channels at each pixel (Simonyan et al.)."""
    return np.abs(gradients).max(axis=-1)


def signal_to_source(signal: np.ndarray, shape: tuple[int, int],
                     geometry: InputGeometry = REFERENCE_GEOMETRY) -> np.ndarray:
    """(H, W, C): a (crop, crop, C) signal on the model input drawn back on the source, per channel."""
    return np.stack([input_map_to_source(signal[..., c], shape, geometry) for c in range(signal.shape[-1])], -1)


def gradient_explanation(image, network: Network, method: str,
                         target: Target = NSFW_LOGIT) -> tuple[np.ndarray, np.ndarray]:
    """One image: ((H, W) map on the source image, (224, 224, C) raw signal on the model input)."""
    rgb = source_rgb(image)
    gradients = input_gradients(network, network.prepare(rgb)[None], method, target)[0]
    return input_map_to_source(pixel_map(gradients[None])[0], rgb.shape[:2], network.geometry), gradients


def saliency_map(image, network: Network, target: Target = NSFW_LOGIT) -> np.ndarray:
    """(H, W) on the source image: max over channels of |d target / d pixel| (Simonyan et al. 2014)."""
    return gradient_explanation(image, network, "saliency", target)[0]


def guided_backprop_map(image, network: Network, target: Target = NSFW_LOGIT) -> np.ndarray:
    """(H, W) on the source image: max over channels of |guided backprop signal|."""
    return gradient_explanation(image, network, "guided", target)[0]


def deconvnet_map(image, network: Network, target: Target = NSFW_LOGIT) -> np.ndarray:
    """(H, W) on the source image: max over channels of |deconvnet projection|."""
    return gradient_explanation(image, network, "deconvnet", target)[0]
