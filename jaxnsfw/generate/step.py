"""One optimization step of `inverse`: the score of the current uint8 image and an optax update.

The optimizer owns a float "latent" change per pixel (0..255 units). The image scored is always
x0 + round(latent), an exact uint8 image inside the budget box: rounding is straight-through, so
the gradient reaches the latent, and what is scored is exactly what will be saved. Everything runs
on the image padded to its jaxprep bucket, so one compiled step serves every image of that bucket.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxnsfw.jaxprep.pipeline import PipelineConfig, caffe_input_from_padded
from jaxnsfw.jaxprep.resize import ResizeTables
from jaxnsfw.jaxprep.surrogate import Mode


class UpdateRule(enum.Enum):
    ADAM = "adam"  # optax.adam
    SIGN = "sign"  # plain signed-gradient steps of `learning_rate` levels (iterative FGSM)


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    # Adam's first steps are signed-gradient steps of `learning_rate` grey levels. A whole level with
    # light momentum (b1 0.5), against half a level with b1 0.9, raised success at budget 2 within 50
    # steps on the 40 smallest reference images from 30 to 35 (target 0.99) and 37 to 40 (0.5), and
    # lost none (bench/inverse_table.py, README "Inverse"). Half a level settles more gently inside a
    # narrow window, but the rounded image then moves too slowly to use the budget in 50 steps.
    learning_rate: float = 1.0
    b1: float = 0.5
    b2: float = 0.999
    method: UpdateRule = UpdateRule.ADAM

    def __post_init__(self) -> None:
        try:  # the rule's name ("sign") is accepted too
            object.__setattr__(self, "method", UpdateRule(self.method))
        except ValueError:
            raise ValueError(f"unknown optimizer {self.method!r}: "
                             f"{' or '.join(rule.value for rule in UpdateRule)}") from None

    def optimizer(self) -> optax.GradientTransformation:
        if self.method is UpdateRule.SIGN:
            return optax.sign_sgd(self.learning_rate)
        return optax.adam(self.learning_rate, self.b1, self.b2)


class Box(NamedTuple):
    """The image (padded to its bucket) and the change each pixel may take (integers, 0..255 units):
    lo = max(-K, -x0), hi = min(K, 255 - x0) inside the image, lo = hi = 0 in the padding."""

    original: jax.Array  # (Hb, Wb, 3) float32
    lo: jax.Array
    hi: jax.Array


def box(original, budget: int, height: int, width: int):
    """The Box of a padded (Hb, Wb, 3) float32 image whose top-left (height, width) is the image."""
    inside = jnp.zeros(original.shape[:2] + (1,), bool).at[:height, :width].set(True)
    lo = jnp.where(inside, jnp.maximum(-budget, -original), 0.0)
    hi = jnp.where(inside, jnp.minimum(budget, 255.0 - original), 0.0)
    return Box(original, lo, hi)


def image_of(latent: jax.Array, bounds: Box) -> jax.Array:
    """The uint8-valued float image a latent change stands for; rounding is straight-through."""
    change = latent + jax.lax.stop_gradient(jnp.round(latent) - latent)
    return bounds.original + change


def project(latent: jax.Array, bounds: Box) -> jax.Array:
    # Clipping the latent (not only its rounding) keeps Adam from drifting far outside the box,
    # where gradient steps would take many iterations to show in the rounded image again.
    return jnp.clip(latent, bounds.lo, bounds.hi)


def nsfw_margin(model, variables, pixels: jax.Array, tables: ResizeTables, horizontal_first: bool,
                config: PipelineConfig) -> jax.Array:
    """logit(NSFW score) of padded (N, Hb, Wb, 3) images through jaxprep's exact pipeline.

    scores_from_padded returns the probability; its logit is taken from the network's two logits
    instead, since 1 - p underflows in float32 for confident scores and its log would be infinite."""
    inputs = caffe_input_from_padded(pixels, tables, horizontal_first, config, Mode.STRAIGHT_THROUGH)
    logits = model.apply(variables, inputs).logits
    return logits[:, 1] - logits[:, 0]


class StepOutput(NamedTuple):
    latent: jax.Array
    opt_state: Any
    score: jax.Array  # the NSFW score of the image the step started from (before the update)


def make_step(model, optimizer: optax.GradientTransformation, horizontal_first: bool,
              config: PipelineConfig = PipelineConfig()) -> Callable[..., StepOutput]:
    """A jitted step(variables, latent, opt_state, bounds, tables, aim) -> StepOutput, where `aim` is
    the target's logit. The loss is the squared logit distance: the score saturates near 0 and 1,
    its logit does not, so the gradient does not vanish on a confident image."""

    def loss(latent, variables, bounds, tables, aim):
        margin = nsfw_margin(model, variables, image_of(latent, bounds)[None], tables, horizontal_first, config)[0]
        return (margin - aim) ** 2, jax.nn.sigmoid(margin)

    def step(variables, latent, opt_state, bounds, tables, aim):
        (_, score), gradient = jax.value_and_grad(loss, has_aux=True)(latent, variables, bounds, tables, aim)
        updates, opt_state = optimizer.update(gradient, opt_state, latent)
        return StepOutput(project(optax.apply_updates(latent, updates), bounds), opt_state, score)

    return jax.jit(step)


@functools.cache
def cached_step(model, optimizer_config: OptimizerConfig, horizontal_first: bool,
                config: PipelineConfig = PipelineConfig()):
    """make_step built once per (model, optimizer, pass order, pipeline); jit then compiles it
    once per bucket shape. Returns (optimizer, step)."""
    optimizer = optimizer_config.optimizer()
    return optimizer, make_step(model, optimizer, horizontal_first, config)
