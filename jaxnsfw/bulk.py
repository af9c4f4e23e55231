"""Scoring many files: walk the inputs, decode in worker processes, score in device batches.

The CPU side (decode, resize, JPEG round trip) is the bottleneck, so it runs in a pool of worker
processes while the main process runs the forward pass on the previous batch. A bounded window of
inputs is in flight at any time, so memory stays flat however many inputs there are, and records
come out in input order. A file that crashes its worker (a decoder bug, say) is retried alone in
a fresh process and, if it crashes again, recorded as an error; the run goes on.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from jaxnsfw import preprocess, views
from jaxnsfw.options import ScoringOptions
from jaxnsfw.records import Record


@dataclass(frozen=True)
class PrepareOptions:
    mode: str = "reference"
    fast: bool = False
    max_frames: int = views.MAX_FRAMES
    max_pixels: int | None = None  # Pillow's decompression-bomb limit; None keeps Pillow's default
    on_device: bool = False  # workers only decode; resize and JPEG run in JAX (--device-preprocess)


@dataclass(frozen=True)
class InputItem:
    path: str
    error: str | None = None  # set when the input could not even be listed (a folder without permission)


@dataclass(frozen=True)
class Prepared:
    path: str
    image: preprocess.PreparedImage | None
    error: str | None
    seconds: float


def walk_inputs(paths: Iterable[str], recursive: bool = False) -> Iterator[InputItem]:
    """Files as given; folders expanded to their files in sorted order (sub-folders only with
    `recursive`). A folder that cannot be listed becomes an item carrying the error."""
    for path in paths:
        if os.path.isdir(path):
            yield from _walk_folder(path, recursive)
        else:
            yield InputItem(path)


def _walk_folder(folder: str, recursive: bool) -> Iterator[InputItem]:
    try:
        with os.scandir(folder) as entries:
            children = sorted((entry.name, entry.is_dir()) for entry in entries)
    except OSError as err:
        yield InputItem(folder, f"{type(err).__name__}: cannot list folder: {err.strerror or err}")
        return
    for name, is_dir in children:
        child = os.path.join(folder, name)
        if is_dir:
            if recursive:
                yield from _walk_folder(child, recursive)
        else:
            yield InputItem(child)


def error_text(err: BaseException, path: str) -> str:
    """"ErrorClass: message" without the path, which the record carries already."""
    message = str(err)
    if message.startswith(path + ": "):
        message = message[len(path) + 2:]
    return message if isinstance(err, preprocess.ImageError) else f"{type(err).__name__}: {message}"


def prepare_file(path: str, options: PrepareOptions) -> Prepared:
    """Decode and preprocess one file; any failure becomes the record's error, never an exception."""
    start = time.process_time()
    try:
        image = preprocess.prepare(path, ScoringOptions(options.mode, options.fast, options.max_frames, device_preprocess=options.on_device))
        return Prepared(path, image, None, time.process_time() - start)
    except Exception as err:  # noqa: BLE001 -- one bad file must never end a bulk run
        return Prepared(path, None, error_text(err, path), time.process_time() - start)


def _init_worker(max_pixels: int | None) -> None:
    from PIL import Image

    if max_pixels is not None:
        Image.MAX_IMAGE_PIXELS = max_pixels


PrepareFunction = Callable[[str, PrepareOptions], Prepared]


class _PreparePool:
    """Worker processes (spawned, so they never inherit JAX's threads) that run `prepare`."""

    def __init__(self, workers: int, options: PrepareOptions, prepare: PrepareFunction):
        self.workers, self.options, self.prepare = workers, options, prepare
        self._executor = self._new_executor(workers)

    def _new_executor(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(self.options.max_pixels,))

    def submit(self, path: str) -> Future:
        return self._executor.submit(self.prepare, path, self.options)

    def recover(self, paths: list[str]) -> list[Prepared]:
        """After a worker died: run each affected file alone, so only the culprit is blamed."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        results = []
        for path in paths:
            with self._new_executor(1) as solo:
                try:
                    results.append(solo.submit(self.prepare, path, self.options).result())
                except BrokenProcessPool:
                    results.append(Prepared(path, None, "WorkerCrashed: the decoding process died on this file "
                                                        "(twice, the second time alone)", 0.0))
        self._executor = self._new_executor(self.workers)
        return results

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def prepare_all(items: Iterable[InputItem], options: PrepareOptions, workers: int, window: int,
                prepare: PrepareFunction = prepare_file, pool: "_PreparePool | None" = None) -> Iterator[Prepared]:
    """Prepared inputs in input order, with at most `window` in flight (0 workers: in this process).

    `pool`: an existing worker pool to use (and leave open); by default one is made and closed."""
    if workers <= 0 and pool is None:
        _init_worker(options.max_pixels)
        for item in items:
            yield Prepared(item.path, None, item.error, 0.0) if item.error else prepare(item.path, options)
        return
    owned = pool is None
    pool = pool or _PreparePool(workers, options, prepare)
    in_flight: deque[tuple[InputItem, Future | None]] = deque()
    items = iter(items)
    try:
        while True:
            while len(in_flight) < window:
                item = next(items, None)
                if item is None:
                    break
                in_flight.append((item, None if item.error else pool.submit(item.path)))
            if not in_flight:
                return
            item, future = in_flight.popleft()
            if future is None:
                yield Prepared(item.path, None, item.error, 0.0)
                continue
            try:
                yield future.result()
            except BrokenProcessPool:
                yield from _recover_in_order([(item, future), *in_flight], pool)
                in_flight.clear()
    finally:
        if owned:
            pool.close()
        else:
            for _, future in in_flight:  # an abandoned stream must not leave work queued in a kept pool
                if future is not None:
                    future.cancel()


def _recover_in_order(entries: list[tuple[InputItem, Future | None]], pool: _PreparePool) -> Iterator[Prepared]:
    finished = {}
    crashed = []
    for item, future in entries:
        if future is None:
            finished[id(item)] = Prepared(item.path, None, item.error, 0.0)
        elif future.done() and not future.cancelled() and future.exception() is None:
            finished[id(item)] = future.result()
        else:
            crashed.append(item)
    recovered = dict(zip((id(item) for item in crashed), pool.recover([item.path for item in crashed])))
    for item, _ in entries:
        yield finished.get(id(item)) or recovered[id(item)]


# Decoded full-size images (--device-preprocess) can be large: a batch is also cut at this size.
MAX_BATCH_BYTES = 1 << 29


def score_prepared(prepared: Iterable[Prepared], classifier, mode: str) -> Iterator[Record]:
    """Records in input order; inputs are scored in device batches of the classifier's batch size."""
    batch: list[Prepared] = []
    views_in_batch = bytes_in_batch = 0

    def flush() -> Iterator[Record]:
        ready = [p for p in batch if p.image is not None]
        verdicts = iter(classifier.verdicts([p.image for p in ready]))
        for p in batch:
            if p.image is None:
                yield Record(p.path, error=p.error, mode=mode, seconds=round(p.seconds, 4))
            else:
                v = next(verdicts)
                yield Record(p.path, score=v.score, mode=mode, frame=v.frame, view=v.rendering,
                             seconds=round(p.seconds, 4))

    for item in prepared:
        batch.append(item)
        if item.image is not None:
            views_in_batch += item.image.view_count
            bytes_in_batch += item.image.nbytes
        if views_in_batch >= classifier.max_batch_size or bytes_in_batch >= MAX_BATCH_BYTES:
            yield from flush()
            batch, views_in_batch, bytes_in_batch = [], 0, 0
    yield from flush()


class FileScorer:
    """Scores files with decoding in a pool of worker processes that stays up between calls.

        if __name__ == "__main__":   # the workers are spawned: a script needs the main guard
            with jaxnsfw.FileScorer(workers=2) as scorer:
                for record in scorer.score(["a.jpg", "photos/"], recursive=True):
                    print(record.path, record.score, record.error)

    Records come in input order, one per file, errors included (see jaxnsfw.records.Record)."""

    def __init__(self, classifier=None, workers: int | None = None, mode: str = "reference", fast: bool = False,
                 device_preprocess: bool = False, max_frames: int = views.MAX_FRAMES):
        """`classifier`: default a shipped-weights Classifier with bulk_batch_size() batches."""
        from jaxnsfw.classifier import Classifier, bulk_batch_size

        self.classifier = classifier or Classifier(batch_size=bulk_batch_size())
        self.workers = os.cpu_count() or 1 if workers is None else workers
        self.options = PrepareOptions(mode=mode, fast=fast, max_frames=max_frames, on_device=device_preprocess)
        self._pool = _PreparePool(self.workers, self.options, prepare_file) if self.workers > 0 else None

    def score(self, paths: Iterable[str], recursive: bool = False) -> Iterator[Record]:
        window = 2 * self.classifier.max_batch_size + 4 * self.workers
        prepared = prepare_all(walk_inputs(paths, recursive), self.options, self.workers, window, pool=self._pool)
        return score_prepared(prepared, self.classifier, self.options.mode)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> "FileScorer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
