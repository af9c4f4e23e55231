"""Shared fixtures: the shipped classifier (loaded once), the committed golden data, and the
full Caffe reference in ../shared when this checkout has it (tests that need it skip otherwise)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import jaxnsfw

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
SHARED_REFERENCE = REPO.parent / "shared" / "caffe_reference"


@pytest.fixture(scope="session")
def classifier() -> jaxnsfw.Classifier:
    return jaxnsfw.Classifier()


@pytest.fixture(scope="session")
def layered_classifier() -> jaxnsfw.Classifier:
    """float32 with Caffe's BatchNorm and Scale layers one by one, for layer-by-layer comparisons."""
    return jaxnsfw.Classifier(fold_batch_norm=False)


@pytest.fixture(scope="session")
def exact_classifier() -> jaxnsfw.Classifier:
    return jaxnsfw.Classifier(exact=True)


@pytest.fixture(scope="session")
def golden() -> dict[str, np.ndarray]:
    with np.load(DATA / "caffe_golden.npz") as npz:
        return dict(npz)


@pytest.fixture(scope="session")
def golden_scores() -> dict[str, dict]:
    return json.loads((DATA / "caffe_scores.json").read_text())


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    if not (SHARED_REFERENCE / "scores.json").exists():
        pytest.skip("../shared/caffe_reference is not beside this checkout")
    return SHARED_REFERENCE
