"""Scoring many files: walk the inputs, decode in worker processes, score in device batches.

The CPU side (decode, resize, JPEG round trip) is the bottleneck, so it runs in a pool of worker
processes while the main process runs the forward pass on the previous batch. A bounded window of
inputs is in flight at any time, so memory stays flat however many inputs there are, and records
come out in input order. Every input gets exactly one record, whatever happens to it:

- a file that crashes its worker (a decoder bug, say) is retried alone in a fresh process and, if
  it crashes again, recorded as an error; the run goes on;
- a file that takes longer than `timeout` seconds (a pathological decode, or a file swapped for a
  FIFO after the walk) has its worker killed and is recorded as an error;
- the workers die with the process that started them (SIGKILL on the parent's death, no SIGINT of
  their own), so an interrupted or killed run leaves no process behind holding its pipes.

Which files are read is jaxnsfw.walk's business (links, loops, FIFOs, aliases).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import time
import warnings
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from jaxnsfw import pillow_compat, preprocess
from jaxnsfw.bulk.records import Record
from jaxnsfw.bulk.walk import FileKey, InputItem, WalkCounts, walk_inputs
from jaxnsfw.options import Mode, ScoringOptions
from jaxnsfw.protocols import ScoresPrepared

if TYPE_CHECKING:
    import numpy as np

# A file whose decoding and preprocessing takes longer than this is given up on (its worker is
# killed). Generous on purpose: a slow disk or a large legitimate image must not be mistaken for a
# file that never ends.
DEFAULT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Prepared:
    path: str
    image: preprocess.PreparedImage | None
    error: str | None
    seconds: float
    warnings: tuple[str, ...] = ()  # what Pillow warned about while reading this file


def error_text(err: BaseException, path: str) -> str:
    """"ErrorClass: message" without the path, which the record carries already."""
    message = str(err)
    if message.startswith(path + ": "):
        message = message[len(path) + 2:]
    return message if isinstance(err, preprocess.ImageError) else f"{type(err).__name__}: {message}"


def prepare_file(path: str, options: ScoringOptions, source: preprocess.ImageSource | None = None) -> Prepared:
    """Decode and preprocess one file; any failure becomes the record's error, never an exception.
    Warnings (Pillow's about palette transparency, say) are kept with the file they are about.
    `source`: what to read when it is not the local file `path` (a file object named `path`, with
    bytes fetched from an object store by jaxnsfw.distributed)."""
    start = time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # About the installed Pillow, not this file: the main process says it once (the command).
        warnings.simplefilter("ignore", pillow_compat.PillowFidelityWarning)
        try:
            image, error = preprocess.prepare(path if source is None else source, options), None
        except Exception as err:  # noqa: BLE001 -- one bad file must never end a bulk run
            image, error = None, error_text(err, path)
    messages = tuple(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    return Prepared(path, image, error, time.process_time() - start, messages)


def prepare_bytes(name: str, data: bytes, options: ScoringOptions) -> Prepared:
    """`prepare_file` for image bytes that arrived some other way (an upload to `jaxnsfw serve`):
    the same decoding, limits and error texts, with `name` standing for the input."""
    import io

    source = io.BytesIO(data)
    source.name = name  # what preprocess.describe names the input by
    return prepare_file(name, options, source)


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (kill -9 included), then check that
    the parent did not die before the request was made."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


# Ctrl-C reaches the whole process group. A worker is spawned with these blocked (see
# _start_signals_blocked), so one arriving while its interpreter starts cannot kill it half-way with
# a "Fatal Python error" on the user's terminal; it then ignores SIGINT (the parent decides what
# happens, and the workers die with it) and takes SIGTERM as usual.
_START_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def _start_signals_blocked() -> Iterator[None]:
    """Around anything that may spawn a worker: the child inherits the blocked mask. A signal that
    arrives meanwhile waits and is delivered to this process when the block ends."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _START_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _init_worker(parent_pid: int, max_pixels: int | None) -> None:
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _START_SIGNALS)
    from PIL import Image

    if max_pixels is not None:
        Image.MAX_IMAGE_PIXELS = max_pixels


def _worker_started() -> int:
    return os.getpid()


PrepareFunction = Callable[[str, ScoringOptions], Prepared]

_MAIN_GUARD_HELP = ("the decoding worker processes could not start. jaxnsfw's workers are spawned: they import "
                    "your __main__ module again, so a script that scores files must do so under "
                    "`if __name__ == \"__main__\":` (see the FileScorer docstring)")


class WorkerStartError(RuntimeError):
    """The decoding workers died before running anything (most often: no main guard in the script)."""


def _kill(executor: ProcessPoolExecutor) -> None:
    """End an executor's processes now: shutdown() alone waits for the files they are decoding.

    The executor keeps its processes and result pipe in private attributes; there is no public way
    to kill them."""
    processes = list((getattr(executor, "_processes", None) or {}).values())
    result_queue = getattr(executor, "_result_queue", None)  # shutdown() forgets it
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(5)
    if not any(process.is_alive() for process in processes):
        # A worker killed while writing its result leaves part of a message in the result pipe, and
        # the executor's manager thread waits for the rest forever (this process holds the pipe's
        # write end too); interpreter exit joins that thread, so the process would never end. With
        # every worker dead, closing our write end turns the wait into EOF: the thread ends.
        writer = getattr(result_queue, "_writer", None)
        if writer is not None:
            writer.close()


class _PreparePool:
    """Worker processes (spawned, so they never inherit JAX's threads) that run `prepare`."""

    def __init__(self, workers: int, options: ScoringOptions, prepare: PrepareFunction, timeout: float | None):
        self.workers, self.options, self.prepare, self.timeout = workers, options, prepare, timeout
        self._executor = self._new_executor(workers)
        try:
            with _start_signals_blocked():
                probe = self._executor.submit(_worker_started)
            probe.result(timeout=300)
        except (BrokenProcessPool, FutureTimeout) as err:
            _kill(self._executor)
            raise WorkerStartError(_MAIN_GUARD_HELP) from err
        except BaseException:  # interrupted while the workers start: none may outlive this
            _kill(self._executor)
            raise

    def _new_executor(self, workers: int) -> ProcessPoolExecutor:
        with _start_signals_blocked():
            return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker, initargs=(os.getpid(), self.options.max_pixels))

    def submit(self, path: str) -> Future:
        return self.submit_call(self.prepare, path, self.options)

    def submit_call(self, function: Callable[..., Prepared], *args) -> Future:
        """Run `function(*args)` in a worker (a module-level function, as the workers are spawned)."""
        try:
            with _start_signals_blocked():  # submitting may spawn a worker
                return self._executor.submit(function, *args)
        except BrokenProcessPool as err:  # a worker died since the last wait: recovered in order
            failed: Future = Future()
            failed.set_exception(err)
            return failed

    def result(self, future: Future) -> Prepared:
        """The future's result; BrokenProcessPool if a worker died, FutureTimeout past the limit."""
        return future.result(timeout=self.timeout)

    def recover(self, paths: list[str]) -> list[Prepared]:
        """After a worker died or hung: run each affected file alone, so only the culprit is blamed."""
        _kill(self._executor)
        results = []
        for path in paths:
            try:
                results.append(self.run_alone(self.prepare, path, self.options))
            except BrokenProcessPool:
                results.append(Prepared(path, None, "WorkerCrashed: the decoding process died on this file "
                                                    "(twice, the second time alone)", 0.0))
            except FutureTimeout:
                results.append(Prepared(path, None, f"Timeout: decoding took longer than {self.timeout:g} s "
                                                    f"(twice, the second time alone); given up", 0.0))
        self._executor = self._new_executor(self.workers)
        return results

    def run_alone(self, function: Callable[..., Prepared], *args) -> Prepared:
        """`function(*args)` in a fresh worker of its own (a suspect input after a crash, so that
        only the culprit is blamed); BrokenProcessPool if it dies, FutureTimeout past the limit."""
        solo = self._new_executor(1)
        try:
            with _start_signals_blocked():
                future = solo.submit(function, *args)
            return future.result(timeout=self.timeout)
        finally:
            _kill(solo)

    def restart(self) -> None:
        """Kill the workers and start fresh ones (a long-lived pool after a crash or a hung file);
        what was running fails with BrokenProcessPool, what was still queued is cancelled."""
        _kill(self._executor)
        self._executor = self._new_executor(self.workers)

    def close(self, now: bool = False) -> None:
        """End the workers: after their current files, or `now` (an interrupted run)."""
        if now:
            _kill(self._executor)
        else:
            self._executor.shutdown(wait=True, cancel_futures=True)


def prepare_all(items: Iterable[InputItem], options: ScoringOptions, workers: int, window: int,
                prepare: PrepareFunction = prepare_file, pool: "_PreparePool | None" = None,
                timeout: float | None = DEFAULT_TIMEOUT_S) -> Iterator[Prepared]:
    """Prepared inputs in input order, with at most `window` in flight (0 workers: in this process,
    with no timeout). `pool`: an existing worker pool to use (and leave open); by default one is
    made, and closed when the stream ends or is abandoned."""
    item: InputItem | None  # None: next(items, None) at the end of the inputs
    if workers <= 0 and pool is None:
        _set_max_pixels(options.max_pixels)
        for item in items:
            yield Prepared(item.path, None, item.error, 0.0) if item.error else prepare(item.path, options)
        return
    owned = pool is None
    pool = pool or _PreparePool(workers, options, prepare, timeout)
    in_flight: deque[tuple[InputItem, Future | None]] = deque()
    items = iter(items)
    finished = False
    try:
        while True:
            while len(in_flight) < window:
                item = next(items, None)
                if item is None:
                    break
                in_flight.append((item, None if item.error else pool.submit(item.path)))
            if not in_flight:
                finished = True
                return
            item, future = in_flight.popleft()
            if future is None:
                yield Prepared(item.path, None, item.error, 0.0)
                continue
            try:
                yield pool.result(future)
            except (BrokenProcessPool, FutureTimeout):
                yield from _recover_in_order([(item, future), *in_flight], pool)
                in_flight.clear()
    finally:
        if owned:
            pool.close(now=not finished)
        else:
            for _, future in in_flight:  # an abandoned stream must not leave work queued in a kept pool
                if future is not None:
                    future.cancel()


def _set_max_pixels(max_pixels: int | None) -> None:
    if max_pixels is not None:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = max_pixels


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


# A record and the embedding of the view that gave its score (None for an input that failed).
Embedded = tuple[Record, "np.ndarray | None"]


def score_prepared(prepared: Iterable[Prepared], classifier: ScoresPrepared, mode: Mode | str,
                   on_warning: Callable[[str, str], None] | None = None) -> Iterator[Record]:
    """Records in input order; inputs are scored in device batches of the classifier's batch size.

    `on_warning(path, message)` receives what Pillow warned about each file (default: Python's
    warnings, naming the file)."""
    return (record for record, _ in _scored(prepared, classifier, mode, on_warning, embeddings=False))


def embed_prepared(prepared: Iterable[Prepared], classifier: ScoresPrepared, mode: Mode | str,
                   on_warning: Callable[[str, str], None] | None = None) -> Iterator[Embedded]:
    """As score_prepared, each record paired with the embedding (1024 float32) of the view that gave
    its score, or None for an input that failed. Same batches, one pass of the network."""
    return _scored(prepared, classifier, mode, on_warning, embeddings=True)


def _scored(prepared: Iterable[Prepared], classifier: ScoresPrepared, mode: Mode | str,
            on_warning: Callable[[str, str], None] | None, embeddings: bool) -> Iterator[Embedded]:
    mode = Mode.parse(mode)
    on_warning = on_warning or (lambda path, message: warnings.warn(f"{path}: {message}", stacklevel=2))
    batch: list[Prepared] = []
    views_in_batch = bytes_in_batch = 0

    def flush() -> Iterator[Embedded]:
        images = [p.image for p in batch if p.image is not None]
        # Scoring alone keeps the one-argument call, so a classifier that only scores still fits.
        verdicts = iter(classifier.verdicts(images, embeddings=True) if embeddings else classifier.verdicts(images))
        for p in batch:
            for message in p.warnings:
                on_warning(p.path, message)
            if p.image is None:
                yield Record(p.path, error=p.error, mode=mode.value, seconds=round(p.seconds, 4)), None
            else:
                v = next(verdicts)
                yield Record(p.path, score=v.score, mode=mode.value, frame=v.frame, view=v.rendering,
                             seconds=round(p.seconds, 4)), (v.embedding if embeddings else None)

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

    Records come in input order, one per file, errors included (see jaxnsfw.records.Record); which
    files are read follows jaxnsfw.walk. Without the main guard the workers cannot start, and the
    constructor raises WorkerStartError saying so."""

    def __init__(self, classifier: ScoresPrepared | None = None, workers: int | None = None,
                 options: ScoringOptions | None = None, timeout: float | None = DEFAULT_TIMEOUT_S, **option_fields):
        """`classifier`: default a shipped-weights Classifier with bulk_batch_size() batches.
        `options` (or its fields as keywords: mode="robust", ...): how files are read.
        `timeout`: seconds one file may take before its worker is killed (None: no limit)."""
        self.options = (options or ScoringOptions()).with_changes(**option_fields)
        if classifier is None:
            from jaxnsfw.classifier import Classifier, bulk_batch_size

            classifier = Classifier(batch_size=bulk_batch_size())
        self.classifier = classifier
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self.timeout = timeout
        self._pool = _PreparePool(self.workers, self.options, prepare_file, timeout) if self.workers > 0 else None

    @property
    def window(self) -> int:
        """Inputs in flight: enough to fill the next batch while the device scores this one (fewer
        when workers hand over full-size decoded images)."""
        batches = 1 if self.options.device_preprocess else 2
        return batches * self.classifier.max_batch_size + 4 * self.workers

    def score(self, paths: Iterable[str | os.PathLike], recursive: bool = False, skip: Iterable[str] = (),
              exclude: Iterable[FileKey] = (), counts: WalkCounts | None = None,
              on_warning: Callable[[str, str], None] | None = None) -> Iterator[Record]:
        """One record per file reachable from `paths`, in input order. `skip`: paths already recorded
        (a resumed run); `exclude`: (device, inode) of files never to read (the run's own output);
        `counts`: filled with what the walk skipped."""
        return score_prepared(self._prepared(paths, recursive, skip, exclude, counts), self.classifier,
                              self.options.mode, on_warning)

    def embed(self, paths: Iterable[str | os.PathLike], recursive: bool = False, skip: Iterable[str] = (),
              exclude: Iterable[FileKey] = (), counts: WalkCounts | None = None,
              on_warning: Callable[[str, str], None] | None = None) -> Iterator[Embedded]:
        """As `score`, each record paired with its embedding (None where the input failed)."""
        return embed_prepared(self._prepared(paths, recursive, skip, exclude, counts), self.classifier,
                              self.options.mode, on_warning)

    def _prepared(self, paths: Iterable[str | os.PathLike], recursive: bool, skip: Iterable[str],
                  exclude: Iterable[FileKey], counts: WalkCounts | None) -> Iterator[Prepared]:
        skip = set(skip)
        items = (item for item in walk_inputs(paths, recursive, exclude, counts) if item.path not in skip)
        return prepare_all(items, self.options, self.workers, self.window, pool=self._pool, timeout=self.timeout)

    def close(self, now: bool = False) -> None:
        if self._pool is not None:
            self._pool.close(now)
            self._pool = None

    def __enter__(self) -> "FileScorer":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(now=exc_type is not None)
