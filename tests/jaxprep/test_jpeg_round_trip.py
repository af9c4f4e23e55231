"""The whole JPEG round trip against Pillow's save(format='JPEG') + open, on 256x256 images: random
content (hypothesis), every reference image's own Pillow resize, and libjpeg-turbo's C paths."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings, strategies as st
from PIL import Image

from jaxnsfw.jaxprep import jpeg, pipeline

from jaxprep_reference import pillow_jpeg_round_trip, pillow_resize

round_trip = jax.jit(lambda rgb: jpeg.jpeg_round_trip(rgb.astype(jnp.int32)))


def _content(kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "flat":
        return np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (256, 256, 3)).copy()
    if kind == "noise":
        return rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    if kind == "blocks":  # hard edges on and off the 8x8 / 16x16 grid, saturated colours
        cells = rng.choice([0, 255], (rng.integers(2, 40),) * 2 + (3,)).astype(np.uint8)
        return np.asarray(Image.fromarray(cells).resize((256, 256), Image.NEAREST))
    small = rng.integers(0, 256, (rng.integers(2, 64),) * 2 + (3,), dtype=np.uint8)
    return pillow_resize(small)  # smooth, photo-like gradients


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["flat", "noise", "blocks", "smooth"]), seed=st.integers(0, 2**16))
def test_random_images_round_trip_as_pillows(kind, seed):
    rgb = _content(kind, seed)
    np.testing.assert_array_equal(np.asarray(round_trip(rgb)), pillow_jpeg_round_trip(rgb))


def test_batched_round_trip_treats_images_independently():
    batch = np.stack([_content(kind, 7) for kind in ("flat", "noise", "blocks", "smooth")])
    expected = np.stack([pillow_jpeg_round_trip(rgb) for rgb in batch])
    np.testing.assert_array_equal(np.asarray(round_trip(batch)), expected)


def test_every_reference_image_round_trips_as_pillow(shared_reference):
    """Fed Pillow's own 256x256 resize of each decodable reference file, the round trip is Pillow's."""
    resized = []
    for path in sorted((shared_reference / "images").glob("*/*")):
        try:
            resized.append(pillow_resize(pipeline.decoded_rgb(path)))
        except pipeline.preprocess.ImageError:
            continue
    assert len(resized) >= 75
    resized = np.stack(resized)
    ours = np.concatenate([np.asarray(round_trip(resized[i:i + 32])) for i in range(0, len(resized), 32)])
    expected = np.stack([pillow_jpeg_round_trip(rgb) for rgb in resized])
    differing = [i for i in range(len(resized)) if (ours[i] != expected[i]).any()]
    assert differing == []


PLAIN_C_SCRIPT = """
import io, sys
import numpy as np
from PIL import Image
images = np.load(sys.argv[1])
out = []
for rgb in images:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG")
    buffer.seek(0)
    out.append(np.asarray(Image.open(buffer)))
np.save(sys.argv[2], np.stack(out))
"""


def test_libjpeg_turbos_plain_c_paths_agree(tmp_path):
    """JSIMD_FORCENONE=1 makes libjpeg-turbo use its C code instead of SIMD (the default here):
    both give our result, so the SIMD/C choice of the machine does not matter."""
    images = np.stack([_content(kind, 11) for kind in ("noise", "blocks", "smooth")])
    np.save(tmp_path / "in.npy", images)
    env = dict(os.environ, JSIMD_FORCENONE="1")
    subprocess.run([sys.executable, "-c", PLAIN_C_SCRIPT, tmp_path / "in.npy", tmp_path / "out.npy"],
                   env=env, check=True)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), np.asarray(round_trip(images)))
