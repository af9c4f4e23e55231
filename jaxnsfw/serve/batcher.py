"""Dynamic batching: images from concurrent requests coalesced into the classifier's batches.

The first image to arrive opens a batch; the batch goes to the device when it holds `max_batch`
views, or `max_wait` has passed since it opened, or no other image is on its way (none is being
decoded: waiting could only add latency), whichever comes first. While the device runs one batch,
the next one fills, so under load batches are full and the wait costs nothing; alone, a request
does not wait at all. Padding to the compiled sizes is the Classifier's (jaxnsfw.batching).
The device runs in one thread of its own, so the event loop never waits on it.

On a CPU a padded row costs as much as a real one (and the cost per image grows with the batch),
so there a batch takes only as many views as the largest compiled size they fill, and the rest
go next, at once: 5 waiting views with sizes (2, 8) go as 2 + 2 + 1, not as 5 padded to 8. On an
accelerator padding is nearly free and one call beats several: every waiting view goes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from jaxnsfw.classifier import Classifier, Verdict
from jaxnsfw.preprocess import PreparedImage


@dataclass
class _Waiting:
    image: PreparedImage
    answer: asyncio.Future


class Batcher:
    """`await batcher.verdict(prepared)`: the image's Verdict, scored in a shared device batch."""

    def __init__(self, classifier: Classifier, max_batch: int, max_wait_s: float,
                 on_batch: Callable[[int, float], None] = lambda views, seconds: None,
                 on_the_way: Callable[[], int] = lambda: 1, avoid_padding: bool = False):
        self.classifier, self.max_batch, self.max_wait_s = classifier, max_batch, max_wait_s
        self.on_the_way = on_the_way  # images being decoded, which will join the queue soon
        self.avoid_padding = avoid_padding
        self.on_batch = on_batch  # (views in the batch, seconds on the device): for the metrics
        self._waiting: deque[_Waiting] = deque()
        self._arrived = asyncio.Event()
        self._device = ThreadPoolExecutor(1, thread_name_prefix="jaxnsfw-device")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="jaxnsfw-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._device.shutdown(wait=True, cancel_futures=True)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def verdict(self, image: PreparedImage) -> Verdict:
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(image, answer))
        self._arrived.set()
        return await answer

    def _views_waiting(self) -> int:
        return sum(w.image.view_count for w in self._waiting)

    async def _next_batch(self) -> list[_Waiting]:
        while not self._waiting:
            self._arrived.clear()
            await self._arrived.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while self._views_waiting() < self.max_batch and (remaining := deadline - loop.time()) > 0:
            if self.on_the_way() == 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        limit = self.max_batch
        if self.avoid_padding:
            fitting = [size for size in self.classifier.batch_sizes if size <= self._views_waiting()]
            limit = min(limit, max(fitting)) if fitting else limit
        batch: list[_Waiting] = []
        views = 0
        while self._waiting and (not batch or views + self._waiting[0].image.view_count <= limit):
            waiting = self._waiting.popleft()
            if not waiting.answer.done():  # a request that timed out or went away no longer waits
                batch.append(waiting)
                views += waiting.image.view_count
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            started = loop.time()
            try:
                verdicts = await loop.run_in_executor(self._device, self.classifier.verdicts,
                                                      [w.image for w in batch])
            except Exception as err:  # noqa: BLE001 -- answered to the batch's requests; the batcher goes on
                for waiting in batch:
                    if not waiting.answer.done():
                        waiting.answer.set_exception(err)
                continue
            self.on_batch(sum(w.image.view_count for w in batch), loop.time() - started)
            for waiting, verdict in zip(batch, verdicts):
                if not waiting.answer.done():
                    waiting.answer.set_result(verdict)
