"""Uploaded images decoded in the bulk pipeline's worker processes, awaited from the event loop.

The pool is jaxnsfw.bulk.pipeline's: spawned workers that die with the server, Pillow's pixel limit
set in each. What a long-lived service adds: when a worker dies on an image (a decoder bug), the
pool is replaced and the images it held are tried again; any that breaks the new pool as well is
then decoded alone in a process of its own, so only the culprit fails. An image that decodes for
longer than the limit has the workers killed and replaced (the others in flight are tried again).
Only as many images as there are workers are handed to the pool at a time (the rest wait here), so
that the limit counts an image's own decoding, never its wait behind others.
Nothing here blocks the event loop: the pool's futures are awaited, solo runs wait in a thread.
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

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

    def __init__(self, workers: int, max_pixels: int | None, timeout_s: float,
                 decode_function: Callable[[str, bytes, ScoringOptions], Prepared] = decode_upload):
        """`decode_function`: what the workers run (a module-level function: they are spawned)."""
        self.timeout_s = timeout_s
        self.decode_function = decode_function
        self.restarts = 0
        # Blocks until the workers answer (seconds): build it off the event loop (asyncio.to_thread).
        self._pool = _PreparePool(workers, ScoringOptions(max_pixels=max_pixels), prepare_file, timeout_s)
        self._generation = 0
        self._restart_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(workers)

    async def _restart(self, generation: int) -> None:
        """Replace the workers, once per failure however many requests saw it."""
        async with self._restart_lock:
            if generation == self._generation:
                await asyncio.to_thread(self._pool.restart)
                self._generation += 1
                self.restarts += 1

    def _timed_out(self, name: str) -> Prepared:
        return Prepared(name, None, f"Timeout: decoding took longer than {self.timeout_s:g} s; given up", 0.0)

    async def decode(self, name: str, data: bytes, options: ScoringOptions) -> Prepared:
        async with self._slots:
            return await self._decode(name, data, options)

    async def _decode(self, name: str, data: bytes, options: ScoringOptions) -> Prepared:
        for _ in range(2):  # in the shared pool: first, then once more after the pool was replaced
            generation = self._generation
            future = self._pool.submit_call(self.decode_function, name, data, options)
            try:
                return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
            except BrokenProcessPool:
                await self._restart(generation)
            except TimeoutError:
                await self._restart(generation)
                return self._timed_out(name)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not future.cancelled() or (task is not None and task.cancelling()):
                    raise  # the request itself was cancelled (its deadline, or the client went away)
                # Still queued when the pool was replaced (its queue is cancelled): try again.
        try:  # twice in a pool that died: alone now, so that only the culprit is blamed
            return await asyncio.to_thread(self._pool.run_alone, self.decode_function, name, data, options)
        except BrokenProcessPool:
            return Prepared(name, None, "WorkerCrashed: the decoding process died on this image "
                                        "(three times, the last time alone)", 0.0)
        except FutureTimeout:
            return self._timed_out(name)

    def close(self) -> None:
        self._pool.close(now=True)
