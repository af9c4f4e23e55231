"""Pillow 13.0.0's reference pixels under any installed Pillow: the self-check knows Pillow 13's
answers, the exact ports give them bit for bit, and what the installed Pillow gets wrong is routed
through the ports with one warning. Run under an older Pillow too (.ci/run does): every test here
holds whichever Pillow is installed, comparing with Pillow itself only where it is trusted."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import warnings

import numpy as np
import PIL
import pytest
from hypothesis import HealthCheck, assume, example, given, settings, strategies as st
from PIL import Image

from jaxnsfw import pillow_compat, preprocess, resize_numpy
from jaxnsfw.bilinear_tables import horizontal_first
from jaxnsfw.pillow_compat import PillowFidelity, PillowFidelityWarning

from conftest import DATA, REPO

GOLDEN_IMAGES = [p for p in sorted((DATA / "images").iterdir()) if p.suffix != ".tif"]  # the TIFF is unreadable
ON_REFERENCE_PILLOW = PIL.__version__ == pillow_compat.REFERENCE_PILLOW


@pytest.fixture(autouse=True)
def fresh_self_check():
    """Each test measures the installed Pillow anew, so that patched answers do not leak."""
    pillow_compat.installed_fidelity.cache_clear()
    yield
    pillow_compat.installed_fidelity.cache_clear()


@pytest.fixture
def force_exact(monkeypatch):
    monkeypatch.setattr(pillow_compat, "FORCE_EXACT", True)


def _pillow_resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize(size[::-1], Image.BILINEAR))


def _other_order_resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The resize with the pass order Pillow 13 does not choose (what older Pillows do to tall images)."""
    def vertical(x):
        return resize_numpy.resample_leading_axis(x, size[0])

    def horizontal(x):
        return np.swapaxes(resize_numpy.resample_leading_axis(np.ascontiguousarray(np.swapaxes(x, 0, 1)), size[1]), 0, 1)

    if horizontal_first(*rgb.shape[:2], *size):
        return horizontal(vertical(rgb))
    return vertical(horizontal(rgb))


def _answer_input(answer: pillow_compat.KnownAnswer) -> np.ndarray:
    return pillow_compat.synthetic_image(answer.height, answer.width, answer.seed)


# --- the known answers ------------------------------------------------------------------------------

def test_the_known_answers_cover_both_pass_orders():
    orders = [answer.horizontal_first for answer in pillow_compat.RESIZE_ANSWERS]
    assert orders.count(True) >= 2 and orders.count(False) >= 2


@pytest.mark.skipif(not ON_REFERENCE_PILLOW, reason="needs the Pillow that made the known answers")
def test_the_self_check_finds_pillow_13_exact():
    assert pillow_compat.installed_fidelity() == PillowFidelity(True, True, True)


@pytest.mark.parametrize("answer", pillow_compat.RESIZE_ANSWERS, ids=lambda a: f"{a.height}x{a.width}")
def test_the_numpy_resize_gives_pillow_13s_known_answers(answer):
    assert pillow_compat.digest(resize_numpy.resize_bilinear(_answer_input(answer), (256, 256))) == answer.sha256


@pytest.mark.parametrize("answer", pillow_compat.RESIZE_ANSWERS, ids=lambda a: f"{a.height}x{a.width}")
def test_the_known_answers_tell_the_pass_orders_apart(answer):
    assert pillow_compat.digest(_other_order_resize(_answer_input(answer), (256, 256))) != answer.sha256


def test_the_exact_jpeg_gives_pillow_13s_known_answer():
    rgb = _answer_input(pillow_compat.JPEG_ANSWER)
    assert pillow_compat.digest(pillow_compat._exact_jpeg()(rgb)) == pillow_compat.JPEG_ANSWER.sha256


def test_the_synthetic_images_are_fixed_integer_functions():
    """No random generator: the same pixels under any NumPy (a few spot values pin the formula)."""
    image = pillow_compat.synthetic_image(3, 4, 9)
    assert image.dtype == np.uint8 and image.shape == (3, 4, 3)
    np.testing.assert_array_equal(image, pillow_compat.synthetic_image(3, 4, 9))
    assert (image != pillow_compat.synthetic_image(3, 4, 10)).any()


# --- the NumPy resize against Pillow ----------------------------------------------------------------

sides = st.one_of(st.just(1), st.integers(1, 2000))
out_sizes = st.one_of(st.just((256, 256)), st.tuples(st.integers(1, 300), st.integers(1, 300)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(height=sides, width=sides, size=out_sizes, seed=st.integers(0, 2**16))
@example(height=2000, width=1, size=(256, 256), seed=0)
@example(height=1, width=2000, size=(256, 256), seed=0)
@example(height=1, width=1, size=(256, 256), seed=0)
@example(height=2000, width=1999, size=(256, 256), seed=0)
@example(height=1999, width=300, size=(256, 256), seed=0)
@example(height=300, width=257, size=(256, 256), seed=0)
@example(height=1000, width=37, size=(40, 256), seed=0)
def test_the_numpy_resize_is_bit_identical_to_pillow_13(height, width, size, seed):
    """Both pass orders, any sizes; compared with the installed Pillow where it is Pillow 13's."""
    assume(pillow_compat.installed_fidelity().resizes_exactly(height, width, *size))
    rgb = pillow_compat.synthetic_image(height, width, seed)
    np.testing.assert_array_equal(resize_numpy.resize_bilinear(rgb, size), _pillow_resize(rgb, size))


@pytest.mark.parametrize("path", GOLDEN_IMAGES, ids=lambda p: p.stem)
def test_the_numpy_resize_of_the_committed_images_is_pillows(path):
    with preprocess.open_image(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    assert pillow_compat.installed_fidelity().resizes_exactly(*rgb.shape[:2], 256, 256)
    np.testing.assert_array_equal(resize_numpy.resize_bilinear(rgb, (256, 256)), _pillow_resize(rgb, (256, 256)))


# --- the reference pipeline through the exact ports -------------------------------------------------

@pytest.mark.parametrize("path", GOLDEN_IMAGES, ids=lambda p: p.stem)
def test_forced_exact_ports_reproduce_caffes_256x256_images(path, golden, force_exact):
    with preprocess.open_image(path) as image:
        rgb256 = preprocess.reference_rgb256(image)
    np.testing.assert_array_equal(rgb256, golden[f"{path.stem}/rgb256_u8"])


def test_forced_exact_ports_reproduce_every_reference_image(shared_reference, force_exact):
    """The full reference includes tall images, which Pillow 13 resizes vertically first."""
    scores = json.loads((shared_reference / "scores.json").read_text())
    with np.load(shared_reference / "scores.npz") as npz:
        compared = 0
        for path in sorted((shared_reference / "images").glob("*/*")):
            key = path.name.rsplit(".", 1)[0]
            if "error" in scores[key]:
                continue
            with preprocess.open_image(path) as image:
                rgb256 = preprocess.reference_rgb256(image)
            np.testing.assert_array_equal(rgb256, npz[f"{key}/rgb256_u8"], err_msg=path.name)
            compared += 1
    assert compared == 75


def _tall_image() -> Image.Image:
    return Image.fromarray(pillow_compat.synthetic_image(700, 120, 3))


def _wrong(answer: pillow_compat.KnownAnswer) -> pillow_compat.KnownAnswer:
    return dataclasses.replace(answer, sha256="0" * 64)


def _count_calls(monkeypatch, module, name: str) -> list:
    calls, original = [], getattr(module, name)

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counting)
    return calls


def test_a_wrong_resize_answer_routes_tall_images_through_the_numpy_port_and_warns_once(monkeypatch):
    expected = pillow_compat.jpeg_round_trip(Image.fromarray(resize_numpy.resize_bilinear(
        np.asarray(_tall_image()), (256, 256))))
    monkeypatch.setattr(pillow_compat, "RESIZE_ANSWERS", tuple(
        answer if answer.horizontal_first else _wrong(answer) for answer in pillow_compat.RESIZE_ANSWERS))
    pillow_compat.installed_fidelity.cache_clear()
    ports = _count_calls(monkeypatch, resize_numpy, "resize_bilinear")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = preprocess.reference_rgb256(_tall_image())
        second = preprocess.reference_rgb256(_tall_image())
        wide = preprocess.reference_rgb256(_tall_image().transpose(Image.Transpose.TRANSPOSE))
    assert pillow_compat.installed_fidelity() == PillowFidelity(True, False, True)
    assert len(ports) == 2  # the tall images, not the wide one
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(second, expected)
    assert wide.shape == (256, 256, 3)
    messages = [str(w.message) for w in caught if issubclass(w.category, PillowFidelityWarning)]
    assert len(messages) == 1
    assert f"Pillow {PIL.__version__}" in messages[0] and "vertical pass first" in messages[0]


def test_a_wrong_jpeg_answer_routes_the_round_trip_through_jaxprep_and_warns_once(monkeypatch):
    image = Image.fromarray(pillow_compat.synthetic_image(256, 256, 4))
    expected = pillow_compat.pillow_jpeg_round_trip(image)
    monkeypatch.setattr(pillow_compat, "JPEG_ANSWER", _wrong(pillow_compat.JPEG_ANSWER))
    pillow_compat.installed_fidelity.cache_clear()
    ports = _count_calls(monkeypatch, pillow_compat, "pillow_jpeg_round_trip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = preprocess.reference_rgb256(image)
        second = preprocess.reference_rgb256(image)
    assert pillow_compat.installed_fidelity().jpeg is False
    assert len(ports) == 1  # the self-check's own round trip; the pipeline's went through jaxprep
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(second, expected)
    messages = [str(w.message) for w in caught if issubclass(w.category, PillowFidelityWarning)]
    assert len(messages) == 1 and "JPEG" in messages[0] and f"Pillow {PIL.__version__}" in messages[0]


def test_the_resize_port_keeps_worker_processes_free_of_jax():
    """Preprocessing workers start without JAX; a Pillow with the wrong resize must not change that."""
    code = (
        "import dataclasses, sys\n"
        "from PIL import Image\n"
        "from jaxnsfw import pillow_compat, preprocess\n"
        "pillow_compat.RESIZE_ANSWERS = tuple(dataclasses.replace(a, sha256='0' * 64)\n"
        "                                     for a in pillow_compat.RESIZE_ANSWERS)\n"
        "image = Image.fromarray(pillow_compat.synthetic_image(700, 120, 3))\n"
        "assert preprocess.reference_rgb256(image).shape == (256, 256, 3)\n"
        "assert not pillow_compat.installed_fidelity().resize_vertical_first\n"
        "print(pillow_compat.__file__)\n"
        "print(sorted(m for m in sys.modules if m == 'jax' or m.startswith('jax.')))\n"
    )
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True,
                            cwd=REPO, check=True)
    module_file, jax_modules = result.stdout.strip().splitlines()
    assert module_file == str(REPO / "jaxnsfw" / "pillow_compat.py")  # this checkout's, not an installed one
    assert jax_modules == "[]"
