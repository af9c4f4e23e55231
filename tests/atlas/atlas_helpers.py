"""Shared by the atlas tests: one small classifier and the test images' embeddings, made once per
process (the network compiles per batch shape, so every test reuses these)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np

from conftest import DATA

IMAGES = DATA / "images"
UNREADABLE = "skimage__multipage_rgb.tif"  # Pillow cannot read it: an error record


@functools.cache
def small_classifier():
    import jaxnsfw

    return jaxnsfw.Classifier(batch_size=8)


@functools.cache
def scratch() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="jaxnsfw-atlas-tests-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


@functools.cache
def images_parquet() -> Path:
    """tests/data/images embedded (in this process, no workers) into a Parquet file."""
    from jaxnsfw.atlas import embed
    from jaxnsfw.bulk import FileScorer

    out = scratch() / "images.parquet"
    with FileScorer(small_classifier(), workers=0) as scorer:
        embed([IMAGES], out=out, scorer=scorer)
    return out


def clustered(count: int, dimensions: int = 64, clusters: int = 6, seed: int = 0) -> np.ndarray:
    """Synthetic embeddings in a few well-separated clusters."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=8.0, size=(clusters, dimensions))
    return (centres[rng.integers(0, clusters, count)] + rng.normal(size=(count, dimensions))).astype(np.float32)
