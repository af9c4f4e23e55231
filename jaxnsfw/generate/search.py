"""`inverse`: edit an image's own pixels, within an L-infinity budget, until it scores a target.

The image is optimized as the reference pipeline reads it (the decoded RGB, at its own resolution)
through jaxprep's exact preprocessing and the network, with straight-through gradients except at
JPEG's quantization (InverseConfig.quantization_gradient). Every
image scored is a uint8 image inside the budget (step.py), and the score that decides success is
the reference pipeline's score of the PNG as it will be written and read back.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxnsfw import preprocess
from jaxnsfw.generate import quality
from jaxnsfw.generate.step import OptimizerConfig, box, cached_step, project
from jaxnsfw.jaxprep.jpeg import JpegConfig
from jaxnsfw.jaxprep.pipeline import PipelineConfig, batch_tables, bucket_for, decoded_rgb, pad_batch
from jaxnsfw.jaxprep.quantize import QuantizationGradient


@dataclasses.dataclass(frozen=True)
class InverseConfig:
    max_change: int = 2  # L-infinity budget, in grey levels (0..255 units)
    steps: int = 100  # at most this many gradient steps
    seed: int = 0
    tolerance: float = 0.01  # success: |reference score - target| <= tolerance
    # The reference score of the saved PNG is also computed every this many steps (besides whenever
    # the device score is within tolerance), so that success never rests on the device score alone.
    check_every: int = 5
    optimizer: OptimizerConfig = OptimizerConfig()
    # Straight-through quantization treats the JPEG round trip as lossless and spends the budget on
    # changes it then quantizes away; NEAR_BOUNDARY reached 0.99 at budget 2 on many more images
    # (README, "Inverse").
    quantization_gradient: QuantizationGradient = QuantizationGradient.NEAR_BOUNDARY

    def pipeline(self) -> PipelineConfig:
        return PipelineConfig(jpeg=JpegConfig(quantization_gradient=self.quantization_gradient))

    def __post_init__(self) -> None:
        # Accept the enum's value too ("straight_through"), as the command line gives it.
        object.__setattr__(self, "quantization_gradient", QuantizationGradient(self.quantization_gradient))
        if not isinstance(self.max_change, int) or not 1 <= self.max_change <= 255:
            raise ValueError(f"the budget (max change) must be a whole number of grey levels from 1 to 255, "
                             f"got {self.max_change}")
        if self.steps < 0:
            raise ValueError(f"steps must be 0 or more, got {self.steps}")
        if not 0 < self.tolerance < 1:
            raise ValueError(f"tolerance must be between 0 and 1 (exclusive), got {self.tolerance}")
        if self.check_every < 1:
            raise ValueError(f"check_every must be at least 1, got {self.check_every}")


def check_target(target: float) -> float:
    """`target` as a float; ValueError unless it is a score (0..1)."""
    target = float(target)
    if not 0 <= target <= 1:  # also refuses NaN
        raise ValueError(f"the target must be an NSFW score from 0 to 1, got {target}")
    return target


@dataclasses.dataclass(frozen=True)
class InverseResult:
    path: str  # the source, as jaxnsfw.preprocess.describe names it
    out: str | None  # where the PNG was written (None: not written)
    target: float
    start_score: float  # the reference score of the source
    score: float  # the reference score of the edited image's PNG, re-read
    max_change: int  # the largest change of any pixel channel, 0..255 units
    psnr: float | None  # dB; None for an unchanged image
    ssim: float | None  # None below the SSIM window
    steps: int  # gradient steps that made the image
    seconds: float
    reached: bool
    image: np.ndarray = dataclasses.field(repr=False)  # uint8 (H, W, 3) RGB, what the PNG holds
    png: bytes = dataclasses.field(repr=False)

    def record(self) -> dict:
        """The JSON-able fields (not the image)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                if field.name not in ("image", "png")}


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def aim_logit(target: float, tolerance: float) -> float:
    """The logit the optimizer aims at: the target's, moved inside the tolerance window where the
    target is 0 or 1 (whose logits are infinite)."""
    aim = min(max(target, tolerance / 2), 1 - tolerance / 2)
    return math.log(aim) - math.log1p(-aim)


def inverse(source: preprocess.ImageSource, target: float, *, out: str | os.PathLike | None = None,
            max_change: int = 2, steps: int = 100, seed: int = 0, tolerance: float = 0.01,
            optimizer: OptimizerConfig = OptimizerConfig(),
            quantization_gradient: QuantizationGradient = QuantizationGradient.NEAR_BOUNDARY,
            classifier=None) -> InverseResult:
    """Edit `source` (path, bytes, PIL image, uint8 array...) by at most `max_change` grey levels
    per pixel channel until its reference NSFW score is within `tolerance` of `target`, or `steps`
    run out (then the closest image found). `out`: write the PNG there; the score reported is then
    that of the file read back. `classifier`: default the shipped weights.

    ValueError for a target outside 0..1 or a bad budget; ImageError for an unreadable source."""
    config = InverseConfig(max_change=max_change, steps=steps, seed=seed, tolerance=tolerance, optimizer=optimizer,
                           quantization_gradient=quantization_gradient)
    target = check_target(target)
    rgb = decoded_rgb(source)
    return inverse_rgb(rgb, target, config, classifier, out, preprocess.describe(source))


def inverse_rgb(rgb: np.ndarray, target: float, config: InverseConfig = InverseConfig(), classifier=None,
                out: str | os.PathLike | None = None, path: str = "<array>") -> InverseResult:
    """inverse() on a decoded uint8 (H, W, 3) RGB image, with its options already checked."""
    started = time.perf_counter()
    if classifier is None:
        from jaxnsfw.classifier import default_classifier

        classifier = default_classifier()

    def reference_score(image: np.ndarray) -> float:
        # The reference pipeline on the pixels: PNG is lossless, so they are what its file reads
        # back as, without encoding a 24-megapixel PNG at every check (the saved file is scored too).
        return float(classifier.score(image))

    height, width = rgb.shape[:2]
    pipeline = config.pipeline()
    bucket = bucket_for(height, width, pipeline)
    tables = batch_tables([(height, width)], bucket, pipeline)
    original = np.asarray(pad_batch([rgb], bucket, 1, np.float32)[0])
    optimizer, step = cached_step(classifier.model, config.optimizer, bucket.horizontal_first, pipeline)
    aim = aim_logit(target, config.tolerance)

    def distance(score: float) -> float:
        return abs(score - target)

    def checked(taken: int, image: np.ndarray) -> tuple:
        return distance(reference_score(image)), taken, image

    with classifier.numerics():  # Classifier(exact=True) needs x64 while tracing and running
        bounds = box(jnp.asarray(original), config.max_change, height, width)
        # Uniform noise below half a grey level leaves the first rounded image the original, but
        # decides which pixels flip first: the seed picks one of the equally good edits.
        noise = jax.random.uniform(jax.random.key(config.seed), original.shape, minval=-0.5, maxval=0.5)
        latent = project(noise, bounds)
        opt_state = optimizer.init(latent)
        # The step's outputs carry the sharding of the classifier's variables (replicated on its
        # mesh); starting the loop state there too keeps the second step from compiling again.
        replicated = jax.tree.leaves(classifier.variables)[0].sharding
        latent, opt_state = jax.device_put((latent, opt_state), replicated)
        start_score = reference_score(rgb)
        # best: (reference distance, steps, image), the start included; closest: the image whose
        # device score came closest, checked at the end if nothing checked on the way reached.
        best = (distance(start_score), 0, rgb)
        closest = (math.inf, 0, rgb)
        for taken in range(config.steps + 1):
            if best[0] <= config.tolerance:  # before the step: a source already on target costs no gradient
                break
            image = (original + np.round(np.asarray(latent)))[:height, :width].astype(np.uint8)
            if taken == config.steps:
                device_score = math.nan  # the last update's image has no device score; check it below
            else:
                latent, opt_state, score = step(classifier.variables, latent, opt_state, bounds, tables, aim)
                device_score = float(score)
                if distance(device_score) < closest[0]:
                    closest = (distance(device_score), taken, image)
            if taken > 0 and (distance(device_score) <= config.tolerance or taken % config.check_every == 0
                              or taken == config.steps):
                best = min(best, checked(taken, image), key=lambda candidate: candidate[0])
        if best[0] > config.tolerance and closest[1] != best[1]:
            best = min(best, checked(closest[1], closest[2]), key=lambda candidate: candidate[0])
    _, taken, image = best
    png = encode_png(image)
    if out is not None:
        with open(out, "wb") as file:
            file.write(png)
        score = float(classifier.score(os.fspath(out)))  # what a reader of the file gets: jaxnsfw.nsfw_score(out)
    else:
        score = float(classifier.score(png))
    return InverseResult(
        path=path, out=None if out is None else os.fspath(out), target=target, start_score=start_score,
        score=score, max_change=int(np.abs(image.astype(np.int16) - rgb).max()),
        psnr=quality.psnr(rgb, image), ssim=quality.ssim(rgb, image), steps=taken,
        seconds=time.perf_counter() - started, reached=distance(score) <= config.tolerance, image=image, png=png)
