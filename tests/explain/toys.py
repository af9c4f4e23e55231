"""Hand-built Flax models whose explanations are known, with OpenNSFW's explanation hooks.

Both take Caffe-style inputs (NHWC, BGR minus the mean) and have the fields `relu` and
`perturbed_layers`, and sow their named layers, exactly as jaxnsfw.model.OpenNSFW does, so the
explanation code runs on them unchanged.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnsfw.model import ModelOutput
from jaxnsfw.pooling import caffe_max_pool
from jaxnsfw.preprocess import MEAN_BGR


class HookedReLUs(nn.Module):
    """The explanation hooks, as OpenNSFW has them."""

    relu: Callable[[jax.Array], jax.Array] = nn.relu
    perturbed_layers: tuple[str, ...] = ()

    def _relu(self, x, name: str):
        x = self.relu(x)
        if name in self.perturbed_layers:
            x = self.perturb(name, x)
        self.sow("intermediates", name, x)
        return x


class RedSquareNet(HookedReLUs):
    """NSFW logit = RED_CELL_WEIGHT * (mean over 8x8 cells of the strongest "redness" in the cell) - 2.

    redness = ReLU(R - (G + B) / 2 - 40) in 0..255 units: saturated red gives ~240, grey, white,
    black and the mean colour give 0. Nothing but red pixels can move the score up."""

    @nn.compact
    def __call__(self, data):
        colour = nn.Conv(2, (1, 1), name="conv_colour")(data)  # channel 0 redness, 1 greenness
        colour = self._relu(colour, "relu_colour")
        cells = caffe_max_pool(colour, 8, 8)
        self.sow("intermediates", "pool1", cells)
        cells = self._relu(cells, "relu_cells")  # a named ReLU layer (identity here) for Grad-CAM
        embedding = cells.mean(axis=(1, 2))
        logits = nn.Dense(2, name="fc")(embedding)
        return ModelOutput(embedding, logits, jax.nn.softmax(logits, axis=-1))


RED_CELL_WEIGHT = 1.0  # NSFW logit per unit of mean cell redness
NSFW_BIAS = -2.0


def red_square_variables() -> dict:
    # Inputs are BGR minus the mean: pixel value v in channel c is data[c] + MEAN_BGR[c].
    kernel = np.array([[-0.5, -0.5, 1.0],   # redness: R - (G + B) / 2
                       [-0.5, 1.0, -0.5]],  # greenness: G - (R + B) / 2
                      np.float32).T
    bias = -40.0 + kernel.T @ MEAN_BGR  # undo the mean subtraction inside the bias
    fc = np.array([[0.0, RED_CELL_WEIGHT], [0.0, 0.0]], np.float32)  # [in, out]; out = (sfw, nsfw)
    return {"params": {
        "conv_colour": {"kernel": jnp.asarray(kernel[None, None]), "bias": jnp.asarray(bias, jnp.float32)},
        "fc": {"kernel": jnp.asarray(fc), "bias": jnp.asarray([0.0, NSFW_BIAS], jnp.float32)},
    }}


def redness(data: np.ndarray) -> np.ndarray:
    """NumPy: the redness channel of RedSquareNet for a (N, H, W, 3) BGR-minus-mean input."""
    bgr = data + MEAN_BGR
    return np.maximum(bgr[..., 2] - 0.5 * (bgr[..., 0] + bgr[..., 1]) - 40.0, 0.0)


class TinyNet(HookedReLUs):
    """conv 3x3 (valid) -> relu_1 -> max pool 2x2/2 -> flatten -> dense 4 -> relu_2 -> dense 2."""

    @nn.compact
    def __call__(self, data):
        x = nn.Conv(3, (3, 3), padding="VALID", name="conv_1")(data)
        x = self._relu(x, "relu_1")
        x = caffe_max_pool(x, 2, 2)
        self.sow("intermediates", "pool1", x)
        x = nn.Dense(4, name="fc_1")(x.reshape(x.shape[0], -1))
        x = self._relu(x, "relu_2")
        logits = nn.Dense(2, name="fc_2")(x)
        return ModelOutput(x, logits, jax.nn.softmax(logits, axis=-1))


TINY_INPUT_SHAPE = (6, 6, 2)  # conv -> 4x4x3, pool -> 2x2x3, flatten 12


def tiny_variables(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    normal = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)  # noqa: E731
    return {"params": {"conv_1": {"kernel": normal(3, 3, 2, 3), "bias": normal(3)},
                       "fc_1": {"kernel": normal(12, 4), "bias": normal(4)},
                       "fc_2": {"kernel": normal(4, 2), "bias": normal(2)}}}


# The three backward rules of a ReLU with input z for an incoming signal g, written out.
NUMPY_RULES = {
    "saliency": lambda g, z: g * (z > 0),
    "guided": lambda g, z: g * (z > 0) * (g > 0),
    "deconvnet": lambda g, z: np.maximum(g, 0),
}


def tiny_backward_numpy(variables: dict, x: np.ndarray, method: str, logit: int) -> np.ndarray:
    """TinyNet's forward pass and the backward pass of `method` from `logit`, by hand in NumPy:
    switches recorded in the forward max pool, the ReLU rule, transposed dense and conv."""
    p = {k: {n: np.asarray(v, np.float64) for n, v in layer.items()} for k, layer in variables["params"].items()}
    kernel = p["conv_1"]["kernel"]
    rule = NUMPY_RULES[method]
    # forward
    z1 = np.zeros((4, 4, 3))
    for i in range(4):
        for j in range(4):
            z1[i, j] = np.einsum("abc,abco->o", x[i:i + 3, j:j + 3], kernel) + p["conv_1"]["bias"]
    a1 = np.maximum(z1, 0)
    pooled = np.zeros((2, 2, 3))
    switches = {}
    for i in range(2):
        for j in range(2):
            for o in range(3):
                window = a1[2 * i:2 * i + 2, 2 * j:2 * j + 2, o]
                k = int(np.argmax(window))  # first maximum, row-major: Caffe's switch
                switches[i, j, o] = (2 * i + k // 2, 2 * j + k % 2)
                pooled[i, j, o] = window.max()
    z2 = pooled.reshape(-1) @ p["fc_1"]["kernel"] + p["fc_1"]["bias"]
    # backward
    g_z2 = rule(p["fc_2"]["kernel"][:, logit], z2)
    g_pooled = (p["fc_1"]["kernel"] @ g_z2).reshape(2, 2, 3)
    g_a1 = np.zeros((4, 4, 3))
    for (i, j, o), (si, sj) in switches.items():
        g_a1[si, sj, o] += g_pooled[i, j, o]
    g_z1 = rule(g_a1, z1)
    g_x = np.zeros_like(x, dtype=np.float64)
    for i in range(4):
        for j in range(4):
            g_x[i:i + 3, j:j + 3] += np.einsum("abco,o->abc", kernel, g_z1[i, j])
    return g_x


def image_with_red_square(shape: tuple[int, int], top: int, left: int, size: int) -> np.ndarray:
    """uint8 RGB: a mid-grey picture with mild texture (not red) and one saturated red square."""
    rng = np.random.default_rng(0)
    rgb = np.clip(rng.normal(128, 20, size=(*shape, 3)), 0, 255).astype(np.uint8)
    rgb[top:top + size, left:left + size] = (230, 20, 20)
    return rgb
