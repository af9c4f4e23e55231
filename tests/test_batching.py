"""The batching rule: a few compiled sizes, each a multiple of the device count; every count of rows
reuses them; padding rows are zeros and never reach the caller."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxnsfw import batching


def test_compiled_sizes_are_one_eight_and_the_largest_not_above_it():
    assert batching.compiled_batch_sizes(32) == (1, 8, 32)
    assert batching.compiled_batch_sizes(5) == (1, 5)
    assert batching.compiled_batch_sizes(1) == (1,)


def test_compiled_sizes_are_multiples_of_the_device_count():
    assert batching.compiled_batch_sizes(32, 4) == (4, 8, 32)
    assert batching.compiled_batch_sizes(6, 4) == (4, 8)


@given(st.integers(1, 300), st.integers(1, 16))
def test_every_compiled_size_splits_evenly_and_the_largest_holds_a_full_chunk(largest, devices):
    sizes = batching.compiled_batch_sizes(largest, devices)
    assert all(size % devices == 0 for size in sizes)
    assert sizes == tuple(sorted(set(sizes)))
    assert sizes[-1] >= largest and len(sizes) <= 3


def test_nonsense_sizes_are_refused():
    with pytest.raises(ValueError):
        batching.compiled_batch_sizes(0)
    with pytest.raises(ValueError):
        batching.compiled_batch_sizes(8, 0)
    with pytest.raises(ValueError):
        batching.padded_size(33, (1, 8, 32))
    with pytest.raises(ValueError):
        list(batching.chunks(10, 0))


@given(st.integers(0, 200), st.integers(1, 64))
def test_any_count_is_cut_into_chunks_that_reuse_the_compiled_shapes(count, largest):
    sizes = batching.compiled_batch_sizes(largest)
    pieces = list(batching.chunks(count, largest))
    assert [i for piece in pieces for i in range(count)[piece]] == list(range(count))
    used = {batching.padded_size(piece.stop - piece.start, sizes) for piece in pieces}
    assert used <= set(sizes)


def test_padding_rows_are_zero_and_trimming_gives_the_batch_back():
    batch = np.arange(3 * 2 * 2, dtype=np.uint8).reshape(3, 2, 2) + 1
    padded = batching.pad_to(batch, batching.padded_size(len(batch), (1, 8)))
    assert padded.shape == (8, 2, 2) and padded.dtype == np.uint8
    assert not padded[3:].any()
    np.testing.assert_array_equal(padded[:len(batch)], batch)
    assert batching.pad_to(batch, 3) is batch
    with pytest.raises(ValueError):
        batching.pad_to(batch, 2)
