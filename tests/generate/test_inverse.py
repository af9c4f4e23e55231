"""`jaxnsfw inverse` and jaxnsfw.generate.inverse on the shipped model, on one small image (chelsea
at 64x64, so every test shares one compiled step): the budget holds, the score reported is the
saved file's, an easy target is reached, and bad inputs are refused with exit 2."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from jaxnsfw import generate
from jaxnsfw.cli import sample_image_path
from jaxnsfw.generate import quality
from jaxnsfw.generate.command import add_inverse_command
from jaxnsfw.generate.search import aim_logit
from jaxnsfw.jaxprep.quantize import QuantizationGradient
from jaxnsfw.preprocess import ImageError

SIDE = 64


@pytest.fixture(scope="module")
def small_chelsea(tmp_path_factory) -> str:
    with Image.open(sample_image_path()) as image:
        small = image.convert("RGB").resize((SIDE, SIDE), Image.BILINEAR)
    path = tmp_path_factory.mktemp("inverse") / "chelsea64.png"
    small.save(path)
    return str(path)


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="jaxnsfw")
    add_inverse_command(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["inverse", *argv])


def run(classifier, capsys, *argv: str) -> tuple[int, dict | None, str]:
    args = parse(*argv)
    status = args.run(args, classifier=classifier)
    out, err = capsys.readouterr()
    return status, (json.loads(out) if out.strip() else None), err


# An unreachable target (1 within 1e-6) and whole-level Adam steps: every step runs and presses the
# edit against the budget, so the budget is what limits the change.
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(budget=st.integers(1, 4), seed=st.integers(0, 3))
def test_the_budget_is_never_exceeded(classifier, small_chelsea, budget, seed):
    result = generate.inverse(small_chelsea, 1.0, tolerance=1e-6, max_change=budget, steps=3, seed=seed,
                              optimizer=generate.OptimizerConfig(learning_rate=2.0), classifier=classifier)
    change = np.abs(result.image.astype(int) - pixels(small_chelsea).astype(int))
    assert change.max() == result.max_change == budget
    assert not result.reached and result.steps > 0
    assert np.array_equal(pixels(io.BytesIO(result.png)), result.image)  # the PNG holds the image


def test_the_reported_score_is_the_saved_file_read_back_even_when_the_target_is_missed(
        classifier, capsys, small_chelsea, tmp_path):
    out = tmp_path / "edited.png"
    status, record, err = run(classifier, capsys, small_chelsea, "--target", "0.99", "--out", str(out),
                              "--steps", "2")
    assert status == 1 and err == ""  # two steps are not enough: exit 1, the closest image still written
    assert record["score"] == classifier.score(str(out))
    assert record["score"] > record["start_score"] == classifier.score(small_chelsea)
    assert set(record) == {"path", "out", "target", "start_score", "score", "max_change", "psnr", "ssim",
                           "steps", "seconds", "reached"}
    assert (record["path"], record["out"], record["target"], record["reached"]) == \
        (small_chelsea, str(out), 0.99, False)
    edited = pixels(out)
    assert record["max_change"] == np.abs(edited.astype(int) - pixels(small_chelsea).astype(int)).max() <= 2
    assert record["psnr"] == pytest.approx(quality.psnr(pixels(small_chelsea), edited))
    assert 0.9 < record["ssim"] < 1


def test_an_easy_target_is_reached_within_the_budget(classifier, capsys, small_chelsea, tmp_path):
    out = tmp_path / "edited.png"
    status, record, _ = run(classifier, capsys, small_chelsea, "--target", "0.5", "--out", str(out),
                            "--steps", "50")
    assert classifier.score(small_chelsea) < 0.01  # a safe photo...
    assert status == 0 and record["reached"]  # ...scores 0.5 after at most 2 grey levels per pixel
    assert abs(record["score"] - 0.5) <= 0.01 and record["score"] == classifier.score(str(out))
    assert 0 < record["steps"] <= 50 and 1 <= record["max_change"] <= 2


def test_the_seed_decides_the_edit(classifier, small_chelsea):
    def edit(seed):
        return generate.inverse(small_chelsea, 0.99, steps=2, seed=seed, classifier=classifier).image

    first = edit(0)
    assert np.array_equal(first, edit(0))
    assert not np.array_equal(first, edit(1))


def test_a_start_within_tolerance_is_kept_unchanged(classifier, small_chelsea):
    start = classifier.score(small_chelsea)
    result = generate.inverse(small_chelsea, start, steps=5, classifier=classifier)
    assert result.reached and result.steps == 0 and result.max_change == 0 and result.psnr is None
    assert np.array_equal(result.image, pixels(small_chelsea)) and result.ssim == 1


@pytest.mark.parametrize(("options", "message"), [
    (("--target", "1.5"), "the target must be an NSFW score from 0 to 1, got 1.5"),
    (("--target", "-0.1"), "the target must be an NSFW score from 0 to 1"),
    (("--target", "nan"), "the target must be an NSFW score from 0 to 1"),
    (("--target", "0.5", "--max-change", "0"), "the budget (max change) must be a whole number of grey levels"),
    (("--target", "0.5", "--max-change", "-2"), "the budget (max change) must be a whole number of grey levels"),
    (("--target", "0.5", "--max-change", "256"), "from 1 to 255, got 256"),
    (("--target", "0.5", "--tolerance", "0"), "tolerance must be between 0 and 1"),
])
def test_bad_options_exit_2_with_a_message(capsys, small_chelsea, tmp_path, options, message):
    status, record, err = run(None, capsys, small_chelsea, "--out", str(tmp_path / "out.png"), *options)
    assert (status, record) == (2, None)
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "out.png").exists()


def test_unreadable_images_and_bad_outputs_exit_2(capsys, small_chelsea, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    cases = [((str(text), "--out", str(tmp_path / "a.png")), "cannot identify image file"),
             ((str(tmp_path / "missing.png"), "--out", str(tmp_path / "a.png")), "No such file"),
             ((small_chelsea, "--out", str(tmp_path / "a.jpg")), "--out must name a .png file"),
             ((small_chelsea, "--out", str(tmp_path / "nowhere" / "a.png")), "does not exist")]
    for argv, message in cases:
        status, record, err = run(None, capsys, *argv, "--target", "0.5")
        assert (status, record) == (2, None), argv
        assert err.startswith("error: ") and message in err, err
    assert not (tmp_path / "a.png").exists()


def test_the_command_offers_every_quantization_gradient_and_defaults_to_near_boundary():
    assert parse("x.png", "--target", "0.5", "--out", "o.png").jpeg_gradient == "near_boundary"
    for gradient in QuantizationGradient:
        assert parse("x.png", "--target", "0.5", "--out", "o.png", "--jpeg-gradient", gradient.value).jpeg_gradient \
            == gradient.value
    with pytest.raises(SystemExit):
        parse("x.png", "--target", "0.5", "--out", "o.png", "--jpeg-gradient", "lossless")
    assert generate.InverseConfig(quantization_gradient="cubic").quantization_gradient is QuantizationGradient.CUBIC
    with pytest.raises(ValueError, match="lossless"):
        generate.InverseConfig(quantization_gradient="lossless")


def test_the_python_api_refuses_what_the_command_refuses(small_chelsea):
    with pytest.raises(ValueError, match="target must be an NSFW score"):
        generate.inverse(small_chelsea, 2.0)
    with pytest.raises(ValueError, match="budget"):
        generate.inverse(small_chelsea, 0.5, max_change=0)
    with pytest.raises(ImageError):
        generate.inverse(b"not an image", 0.5)


def test_the_update_rule_is_named_by_its_enum_or_its_name():
    assert generate.OptimizerConfig().method is generate.UpdateRule.ADAM
    sign = generate.OptimizerConfig(method="sign", learning_rate=1.0)
    assert sign.method is generate.UpdateRule.SIGN
    # A signed step moves every coordinate by exactly the learning rate, whatever the gradient's size.
    gradient = jnp.array([-3.0, 1e-4, 0.5])
    updates, _ = sign.optimizer().update(gradient, sign.optimizer().init(gradient))
    assert np.array_equal(np.asarray(updates), [1.0, -1.0, -1.0])
    with pytest.raises(ValueError, match="unknown optimizer 'sgd': adam or sign"):
        generate.OptimizerConfig(method="sgd")


def test_the_aim_is_finite_and_inside_the_window_for_targets_0_and_1():
    for target in (0.0, 1.0):
        aim = aim_logit(target, 0.01)
        assert math.isfinite(aim) and abs(1 / (1 + math.exp(-aim)) - target) <= 0.01
    assert aim_logit(0.5, 0.01) == 0


def test_psnr_and_ssim():
    rng = np.random.default_rng(0)
    image = rng.integers(1, 255, (32, 32, 3), dtype=np.uint8)
    assert quality.psnr(image, image) is None and quality.ssim(image, image) == pytest.approx(1)
    assert quality.psnr(image, image + 1) == pytest.approx(20 * math.log10(255))  # MSE 1
    assert quality.ssim(image, rng.integers(0, 256, image.shape, dtype=np.uint8)) < 0.1
    assert quality.ssim(image[:10], image[:10]) is None  # smaller than the 11x11 window


def test_each_step_scores_the_uint8_image_that_would_be_saved(classifier, small_chelsea):
    """The device score a step reports is the reference score of the rounded image, as a PNG."""
    from jaxnsfw.generate import step as step_lib
    from jaxnsfw.generate.search import encode_png
    from jaxnsfw.jaxprep.pipeline import PipelineConfig, batch_tables, bucket_for, pad_batch

    rgb = pixels(small_chelsea)
    bucket = bucket_for(SIDE, SIDE)
    tables = batch_tables([(SIDE, SIDE)], bucket, PipelineConfig())
    bounds = step_lib.box(pad_batch([rgb], bucket, 1, np.float32)[0], 2, SIDE, SIDE)
    optimizer, step = step_lib.cached_step(classifier.model, step_lib.OptimizerConfig(), bucket.horizontal_first)
    latent = step_lib.project(np.random.default_rng(0).uniform(-3, 3, bounds.lo.shape).astype(np.float32), bounds)
    opt_state = optimizer.init(latent)
    image = np.asarray(step_lib.image_of(latent, bounds))[:SIDE, :SIDE]
    assert np.array_equal(image, np.round(image)) and 0 <= image.min() and image.max() <= 255
    assert np.abs(image - rgb).max() == 2  # the noise, clipped to the budget, changes pixels
    _, _, score = step(classifier.variables, latent, opt_state, bounds, tables, 0.0)
    assert float(score) == pytest.approx(classifier.score(encode_png(image.astype(np.uint8))), abs=1e-6)
    assert abs(float(score) - classifier.score(small_chelsea)) > 1e-3


class _Logits(NamedTuple):
    logits: jax.Array


@dataclasses.dataclass(frozen=True)
class _BrightnessModel:
    """A known answer: logit(NSFW) = weight * mean of the Caffe input blob, so the brighter the
    crop the higher the score, and the best edit within a budget K raises every pixel that reaches
    the crop by K."""

    def apply(self, variables, inputs):
        margin = variables["weight"] * jnp.mean(inputs, axis=(1, 2, 3))
        return _Logits(jnp.stack([jnp.zeros_like(margin), margin], axis=1))


class _BrightnessClassifier:
    model = _BrightnessModel()
    variables = {"weight": jnp.float32(0.05)}

    def numerics(self):
        return contextlib.nullcontext()

    def score(self, source) -> float:
        from jaxnsfw.preprocess import preprocess

        margin = 0.05 * float(np.mean(preprocess(source), dtype=np.float64))
        return 1 / (1 + math.exp(-margin))


def test_on_a_model_with_a_known_optimum_the_edit_finds_it(small_chelsea):
    toy = _BrightnessClassifier()
    rgb = pixels(small_chelsea)
    budget = 2
    # Straight through, the gradient is that of a lossless JPEG, for which this model is linear in the
    # pixels. (NEAR_BOUNDARY, the default, weights each DCT coefficient by how near JPEG is to
    # requantizing it, which is not this model's optimum at every pixel.)
    result = generate.inverse(small_chelsea, 1.0, tolerance=1e-6, max_change=budget, steps=12, classifier=toy,
                              quantization_gradient=QuantizationGradient.STRAIGHT_THROUGH)
    change = result.image.astype(int) - rgb
    # The crop (offset 16 of 256) is the centre 56x56 of this 64x64 image; inside it, away from the
    # edge where the resize mixes in pixels outside, every pixel that can rise by the budget did.
    centre = (slice(6, 58), slice(6, 58))
    room = rgb[centre] <= 255 - budget
    assert (change[centre][room] == budget).all()
    best = toy.score(np.clip(rgb.astype(int) + budget, 0, 255).astype(np.uint8))
    assert result.score == pytest.approx(best, abs=1e-6)
    assert result.score > toy.score(small_chelsea)
