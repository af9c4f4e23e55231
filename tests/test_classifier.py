"""The scoring API: one score whichever entry point is used, fixed compiled batch shapes, robust
verdicts that name their view, and batches split across several devices in input order."""

from __future__ import annotations

import io
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import jaxnsfw
from jaxnsfw import classifier as classifier_lib
from jaxnsfw import preprocess
from jaxnsfw.options import Mode, ScoringOptions

from conftest import DATA, REPO

TINY = np.full((8, 8, 3), 200, np.uint8)
IMAGES = [DATA / "images" / name for name in
          ("skimage__phantom.png", "skimage__color.png", "astronaut_q10.jpg", "chelsea_rgba_halftransparent.png")]


def test_every_entry_point_gives_the_same_score(classifier):
    single = [jaxnsfw.nsfw_score(path) for path in IMAGES]
    from_bytes = [classifier.score(path.read_bytes()) for path in IMAGES]
    batch = classifier.scores(IMAGES)
    network = classifier.score_inputs(np.stack([preprocess.preprocess(path) for path in IMAGES]))
    command = subprocess.run([sys.executable, "-m", "jaxnsfw", "score", "--workers", "1", *map(str, IMAGES)],
                             capture_output=True, text=True, cwd=REPO, timeout=300)
    cli = [json.loads(line)["score"] for line in command.stdout.splitlines()]
    for other in (from_bytes, batch, network, cli):
        np.testing.assert_allclose(other, single, rtol=0, atol=1e-6)


def test_arbitrary_batch_sizes_reuse_the_compiled_shapes(classifier):
    classifier.warm_up()
    compiled = classifier._score_rgb256._cache_size()
    rng = np.random.default_rng(0)
    for count in (1, 2, 7, 9, 33):
        scores = classifier.score_rgb256(rng.integers(0, 256, (count, 256, 256, 3), dtype=np.uint8))
        assert scores.shape == (count,)
    assert classifier._score_rgb256._cache_size() == compiled


def test_on_device_crop_and_mean_equal_the_host_preprocessing(classifier):
    rgb256 = np.stack([preprocess.reference_rgb256(Image.open(path)) for path in IMAGES])
    on_host = classifier.score_inputs(np.stack([preprocess.caffe_input(x) for x in rgb256]))
    np.testing.assert_allclose(classifier.score_rgb256(rgb256), on_host, rtol=0, atol=1e-6)


def test_robust_score_is_the_maximum_over_views_and_never_below_the_reference(classifier):
    for path in IMAGES:
        verdict = classifier.verdict(path, mode="robust")
        assert verdict.score == pytest.approx(float(verdict.view_scores.max()), abs=0)
        assert verdict.score >= classifier.score(path) - 1e-6


def test_content_hidden_under_transparency_is_found_by_robust_mode(classifier):
    """The stored pixels are a flat colour; the picture is only in what a viewer sees over black."""
    photo = np.asarray(Image.open(DATA / "images" / "skimage__color.png").convert("RGB")).astype(np.uint16)
    rgba = np.empty(photo.shape[:2] + (4,), np.uint8)
    rgba[..., :3] = 255
    rgba[..., 3] = 255 - photo.mean(axis=2).astype(np.uint8)  # white ink whose opacity draws the picture
    image = Image.fromarray(rgba, "RGBA")
    verdict = classifier.verdict(image, mode="robust")
    over_black = classifier.score(Image.alpha_composite(Image.new("RGBA", image.size, (0, 0, 0, 255)), image))
    assert verdict.rendering == "shown over black"
    assert verdict.score == pytest.approx(over_black, abs=1e-6)
    assert classifier.score(image) != pytest.approx(over_black, abs=1e-3)  # reference sees only white


def test_robust_mode_scores_every_frame_and_names_the_worst(classifier):
    frames = [Image.new("RGB", (64, 64), (128, 128, 128)) for _ in range(3)]
    frames.insert(2, Image.open(DATA / "images" / "skimage__color.png").convert("RGB").resize((64, 64)))
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=40)
    standalone = []
    with Image.open(io.BytesIO(buffer.getvalue())) as gif:
        for index in range(gif.n_frames):
            gif.seek(index)
            standalone.append(classifier.score(gif.convert("RGB")))
    verdict = classifier.verdict(buffer.getvalue(), mode="robust")
    assert verdict.frame == int(np.argmax(standalone))
    assert verdict.score == pytest.approx(max(standalone), abs=1e-6)
    assert classifier.score(buffer.getvalue()) == pytest.approx(standalone[0], abs=1e-6)  # reference: frame 0


@pytest.mark.slow
def test_batches_are_split_across_four_devices_in_input_order(classifier):
    expected = classifier.scores(IMAGES)
    script = (
        "import json, sys, numpy as np, jax, jaxnsfw\n"
        "clf = jaxnsfw.Classifier()\n"
        "paths = sys.argv[1:]\n"
        "scores = clf.scores(paths)\n"
        "prepared = [jaxnsfw.preprocess.prepare(p) for p in paths]\n"
        "rgb = np.concatenate([p.rgb256 for p in prepared])\n"
        "padded = np.zeros((clf.batch_sizes[0],) + rgb.shape[1:], np.uint8); padded[:len(rgb)] = rgb\n"
        "out = clf._score_rgb256(clf.variables, jax.device_put(padded, clf._batch_sharding))\n"
        "print(json.dumps({'devices': len(jax.devices()), 'batch_sizes': clf.batch_sizes, 'scores': scores.tolist(),\n"
        "                  'output_devices': len(out.sharding.device_set)}))\n"
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", script, *map(str, IMAGES)], capture_output=True, text=True,
                            env=env, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["devices"] == 4 and report["output_devices"] == 4
    assert all(size % 4 == 0 for size in report["batch_sizes"])
    np.testing.assert_allclose(report["scores"], expected, rtol=0, atol=1e-6)


def test_device_preprocessing_gives_the_cpu_pipelines_scores(classifier):
    for mode in ("reference", "robust"):
        on_host = classifier.scores(IMAGES, mode=mode)
        on_device = classifier.scores(IMAGES, mode=mode, device_preprocess=True)
        np.testing.assert_allclose(on_device, on_host, rtol=0, atol=1e-6)


class NeverRead(io.BytesIO):
    """A file object that fails the test if anything reads it."""

    def read(self, *args):
        raise AssertionError("the input was read before the arguments were checked")


def test_an_unknown_mode_is_refused_before_the_input_is_opened(classifier):
    for call in (lambda: classifier.score(NeverRead(), mode="strict"),
                 lambda: classifier.verdict(NeverRead(), mode="strict"),
                 lambda: classifier.scores([NeverRead()], mode="strict"),
                 lambda: jaxnsfw.nsfw_score(NeverRead(), mode="strict"),
                 lambda: jaxnsfw.nsfw_scores([NeverRead()], mode="strict")):
        with pytest.raises(ValueError, match="'reference', 'robust'"):
            call()


def test_modes_are_accepted_as_names_enums_or_options_and_verdict_defaults_to_score(classifier):
    reference = classifier.score(TINY)
    assert classifier.verdict(TINY).score == reference
    assert classifier.score(TINY, Mode.REFERENCE) == classifier.score(TINY, "reference") == reference
    assert classifier.score(TINY, options=ScoringOptions(mode="robust")) == classifier.score(TINY, "robust")
    assert classifier.scores([TINY], options=ScoringOptions()).tolist() == [reference]
    with pytest.raises(ValueError, match="not both"):
        classifier.score(TINY, "robust", options=ScoringOptions())


def test_an_input_of_no_supported_kind_is_a_type_error_naming_the_kinds():
    for call in (jaxnsfw.nsfw_score, preprocess.prepare):
        with pytest.raises(TypeError, match="expected a path, bytes, file object, PIL image or uint8 array, got NoneType"):
            call(None)
    with pytest.raises(TypeError, match="got int"):
        jaxnsfw.nsfw_scores([TINY, 3])


@pytest.mark.parametrize("single", ["a.png", pathlib.Path("a.png"), b"\x89PNG", TINY])
def test_one_input_where_many_are_expected_asks_for_a_list(classifier, single):
    for call in (classifier.scores, jaxnsfw.nsfw_scores):
        with pytest.raises(TypeError, match="pass a list"):
            call(single)


def test_nothing_where_many_are_expected_says_what_is(classifier):
    for call in (classifier.scores, jaxnsfw.nsfw_scores):
        with pytest.raises(TypeError, match="expected an iterable of images .*, got NoneType"):
            call(None)


def test_a_file_name_given_as_bytes_is_refused_with_what_to_pass_instead(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(TINY).save(path)
    with pytest.raises(preprocess.ImageError, match="bytes are read as image data; pass a str or pathlib.Path"):
        jaxnsfw.nsfw_score(os.fsencode(path))
    assert jaxnsfw.nsfw_score(path.read_bytes()) == pytest.approx(jaxnsfw.nsfw_score(path), abs=0)
    with pytest.raises(preprocess.ImageError, match="cannot identify"):  # neither an image nor a file
        jaxnsfw.nsfw_score(os.fsencode(tmp_path / "missing.png"))
