"""Pipeline parity: from the original file, the reference preprocessing reproduces Caffe's
256x256 image bit for bit and its score; files the reference rejects are rejected clearly."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

import jaxnsfw
from jaxnsfw import pillow_compat, preprocess

from conftest import DATA

IMAGES = sorted((DATA / "images").iterdir())
EXACT_TOLERANCE = 1e-6


def _key(path) -> str:
    return path.name.rsplit(".", 1)[0]


def test_parity_is_defined_by_the_pillow_that_made_the_reference(golden_scores):
    """Any Pillow may be installed; pillow_compat checks it against this version's known answers."""
    assert pillow_compat.REFERENCE_PILLOW == golden_scores["__meta__"]["versions"]["pillow"]


@pytest.mark.parametrize("path", IMAGES, ids=_key)
def test_rgb256_after_jpeg_round_trip_is_identical_to_caffes(path, golden, golden_scores):
    reference = golden_scores[_key(path)]
    if "error" in reference:
        with pytest.raises(preprocess.ImageError):
            preprocess.open_image(path)
        return
    with preprocess.open_image(path) as image:
        rgb256 = preprocess.reference_rgb256(image)
    np.testing.assert_array_equal(rgb256, golden[f"{_key(path)}/rgb256_u8"])


def test_scores_from_files_match_caffe_within_1e6(exact_classifier, golden_scores):
    scored = [p for p in IMAGES if "error" not in golden_scores[_key(p)]]
    mine = exact_classifier.scores(scored)
    caffe = np.array([golden_scores[_key(p)]["nsfw"] for p in scored])
    assert np.abs(mine - caffe).max() <= EXACT_TOLERANCE


def test_the_crop_is_the_centre_224_of_256_in_bgr_minus_mean():
    rgb = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    blob = preprocess.caffe_input(rgb)
    assert blob.shape == (224, 224, 3) and blob.dtype == np.float32
    np.testing.assert_array_equal(blob[0, 0], rgb[16, 16, ::-1].astype(np.float32) - [104, 117, 123])
    np.testing.assert_array_equal(blob[-1, -1], rgb[239, 239, ::-1].astype(np.float32) - [104, 117, 123])


def test_every_input_kind_gives_the_same_score(classifier):
    path = DATA / "images" / "skimage__camera.png"
    data = path.read_bytes()
    with Image.open(path) as image:
        image.load()
        rgb_array = np.asarray(image.convert("RGB"))
        pil_image = image.copy()
    scores = [classifier.score(path), classifier.score(str(path)), classifier.score(data),
              classifier.score(io.BytesIO(data)), classifier.score(pil_image), classifier.score(rgb_array)]
    assert max(scores) - min(scores) == 0.0


def test_nsfw_score_of_the_bundled_sample_is_caffes(golden_scores):
    from jaxnsfw.cli import sample_image_path

    score = jaxnsfw.nsfw_score(sample_image_path())
    assert isinstance(score, float)
    assert abs(score - golden_scores["skimage__chelsea"]["nsfw"]) <= EXACT_TOLERANCE


def test_truncated_jpeg_is_rejected_naming_the_file(tmp_path):
    data = (DATA / "images" / "astronaut_q10.jpg").read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: int(len(data) * 0.7)])
    with pytest.raises(preprocess.ImageError, match=r"truncated\.jpg: OSError: image file is truncated"):
        preprocess.preprocess(truncated)


@pytest.mark.parametrize("content", [b"", b"this is not an image\n" * 10, b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_non_images_are_rejected_naming_the_file(tmp_path, content):
    path = tmp_path / "bogus.png"
    path.write_bytes(content)
    with pytest.raises(preprocess.ImageError, match="bogus.png"):
        preprocess.preprocess(path)


def test_missing_files_and_directories_are_rejected(tmp_path):
    with pytest.raises(preprocess.ImageError, match="missing.jpg"):
        preprocess.preprocess(tmp_path / "missing.jpg")
    with pytest.raises(preprocess.ImageError, match="is a directory"):
        preprocess.preprocess(tmp_path)


def test_arrays_must_be_uint8_rgb():
    with pytest.raises(preprocess.ImageError, match="uint8 HxWx3"):
        preprocess.preprocess(np.zeros((10, 10), np.uint8))
    with pytest.raises(preprocess.ImageError, match="uint8 HxWx3"):
        preprocess.preprocess(np.zeros((10, 10, 3), np.float32))


def test_decompression_bombs_are_rejected_with_pillows_reason(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("RGB", (400, 300)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 120000 px > 2 x limit: Pillow refuses
    with pytest.raises(preprocess.ImageError, match="bomb.png: DecompressionBombError"):
        preprocess.preprocess(path)


def test_every_reference_image_round_trips_identically_or_fails_as_caffe_did(shared_reference):
    scores = json.loads((shared_reference / "scores.json").read_text())
    with np.load(shared_reference / "scores.npz") as npz:
        compared = 0
        for path in sorted((shared_reference / "images").glob("*/*")):
            reference = scores[_key(path)]
            if "error" in reference:
                with pytest.raises(preprocess.ImageError) as failure:
                    preprocess.reference_rgb256(preprocess.open_image(path))
                assert reference["error"].split(":")[0] in str(failure.value)
                continue
            with preprocess.open_image(path) as image:
                rgb256 = preprocess.reference_rgb256(image)
            np.testing.assert_array_equal(rgb256, npz[f"{_key(path)}/rgb256_u8"], err_msg=path.name)
            compared += 1
    assert compared == 75


@pytest.mark.slow
def test_scores_from_every_reference_file_match_caffe(exact_classifier, shared_reference):
    scores = json.loads((shared_reference / "scores.json").read_text())
    paths = [p for p in sorted((shared_reference / "images").glob("*/*")) if "error" not in scores[_key(p)]]
    mine = exact_classifier.scores(paths)
    diff = np.abs(mine - np.array([scores[_key(p)]["nsfw"] for p in paths]))
    print(f"{len(paths)} files: max |nsfw - caffe| {diff.max():.3g} ({paths[diff.argmax()].name})")
    assert diff.max() <= EXACT_TOLERANCE
