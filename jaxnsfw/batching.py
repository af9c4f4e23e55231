"""Batches padded to a few compiled sizes: the one rule every jitted entry point follows.

A jitted function compiles once per input shape, so a stream of arbitrary counts would compile one
program per count. Instead every caller cuts its input into chunks of at most the largest size and
pads each chunk with zero rows up to the smallest compiled size that holds it, then drops the
padding rows from the result. Pure functions of NumPy arrays; no JAX here.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

# The sizes compiled below the largest: a single image, and a short batch for small requests.
SMALL_BATCH_SIZES = (1, 8)


def compiled_batch_sizes(largest: int, device_count: int = 1) -> tuple[int, ...]:
    """The batch shapes compiled for chunks of at most `largest` rows: 1, 8 and `largest` (those not
    above it), each rounded up to a multiple of `device_count` so that a batch splits evenly."""
    if largest < 1:
        raise ValueError(f"batch size must be at least 1, got {largest}")
    if device_count < 1:
        raise ValueError(f"device count must be at least 1, got {device_count}")
    sizes = {size for size in (*SMALL_BATCH_SIZES, largest) if size <= largest}
    return tuple(sorted({-(-size // device_count) * device_count for size in sizes}))


def padded_size(count: int, sizes: tuple[int, ...]) -> int:
    """The smallest of `sizes` that holds `count` rows."""
    fitting = [size for size in sizes if size >= count]
    if not fitting:
        raise ValueError(f"{count} rows do not fit the largest compiled batch ({max(sizes)}); cut with chunks()")
    return min(fitting)


def pad_to(batch: np.ndarray, size: int) -> np.ndarray:
    """`batch` with zero rows appended up to `size` rows (the batch itself when it has as many)."""
    batch = np.asarray(batch)
    if len(batch) > size:
        raise ValueError(f"cannot pad {len(batch)} rows down to {size}")
    if len(batch) == size:
        return batch
    padded = np.zeros((size,) + batch.shape[1:], batch.dtype)
    padded[:len(batch)] = batch
    return padded


def chunks(count: int, largest: int) -> Iterator[slice]:
    """Consecutive slices of at most `largest` rows covering range(count), in order."""
    if largest < 1:
        raise ValueError(f"chunk size must be at least 1, got {largest}")
    for start in range(0, count, largest):
        yield slice(start, min(count, start + largest))
