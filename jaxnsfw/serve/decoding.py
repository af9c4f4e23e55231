"""Uploaded images decoded in the bulk pipeline's worker processes, awaited from the event loop.

The pool is jaxnsfw.bulk.pipeline's: spawned workers that die with the server, Pillow's pixel limit
set in each. What a long-lived service adds: a worker that crashes on an image (a decoder bug) is
replaced and the images it held are tried once more, so only the culprit fails; an image that
decodes for longer than the limit has the workers killed and replaced (the others in flight are
tried again). Nothing here ever blocks the event loop: the pool's futures are awaited.
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures.process import BrokenProcessPool

from jaxnsfw.bulk.pipeline import Prepared, _PreparePool, prepare_bytes, prepare_file
from jaxnsfw.options import ScoringOptions

# Pillow names an unnamed stream by its repr ("<_io.BytesIO object at 0x7f...>"): noise to a client.
_STREAM_REPR = re.compile(r" ?<_io\.BytesIO object at 0x[0-9a-f]+>")


def decode_upload(name: str, data: bytes, options: ScoringOptions) -> Prepared:
    """In a worker: one upload decoded and brought to the network's pixels (or its error)."""
    prepared = prepare_bytes(name, data, options)
    if prepared.error is not None:
        error = _STREAM_REPR.sub("", prepared.error)
        prefix = f"{name}: "
        error = error[len(prefix):] if error.startswith(prefix) else error
        prepared = Prepared(name, None, error, prepared.seconds, prepared.warnings)
    return prepared


class Decoder:
    """`await decoder.decode(name, data, options)`: a Prepared (its `error` set for a bad image)."""

    def __init__(self, workers: int, max_pixels: int | None, timeout_s: float):
        self.timeout_s = timeout_s
        self.restarts = 0
        # Blocks until the workers answer (seconds): build it off the event loop (asyncio.to_thread).
        self._pool = _PreparePool(workers, ScoringOptions(max_pixels=max_pixels), prepare_file, timeout_s)
        self._generation = 0
        self._restart_lock = asyncio.Lock()

    async def _restart(self, generation: int) -> None:
        """Replace the workers, once per failure however many requests saw it."""
        async with self._restart_lock:
            if generation == self._generation:
                await asyncio.to_thread(self._pool.restart)
                self._generation += 1
                self.restarts += 1

    async def decode(self, name: str, data: bytes, options: ScoringOptions) -> Prepared:
        for attempt in range(2):
            generation = self._generation
            future = self._pool.submit_call(decode_upload, name, data, options)
            try:
                return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
            except BrokenProcessPool:
                await self._restart(generation)
                if attempt == 1:
                    return Prepared(name, None, "WorkerCrashed: the decoding process died on this image "
                                                "(twice)", 0.0)
            except TimeoutError:
                await self._restart(generation)
                return Prepared(name, None, f"Timeout: decoding took longer than {self.timeout_s:g} s; given up",
                                0.0)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._pool.close(now=True)
