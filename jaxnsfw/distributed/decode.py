"""The CPU side of a distributed run: one Ray task per input block reads, decodes and preprocesses
its files with the local engine's own function (jaxnsfw.bulk.pipeline.prepare_file), so the
pixels, errors and warnings are the ones a local run gives.

Rows crossing Ray's object store carry pickled Python objects (an InputBlock's items in, one
Prepared per file out): file names may be any bytes and a robust-mode file any number of views,
which Arrow columns would have to be taught; the pickle of a uint8 array is a copy of its bytes.
"""

from __future__ import annotations

import io
import os
import pickle
import threading
import time
from typing import Any

from jaxnsfw.bulk.pipeline import Prepared, prepare_file
from jaxnsfw.distributed.inputs import InputBlock, is_uri
from jaxnsfw.options import ScoringOptions

# Tests only: a decoding task that reaches a file of this name kills its own process (os._exit),
# as a decoder crash would. Read from the worker's environment, so it is set where Ray starts.
CRASH_TEST_ENV = "JAXNSFW_TEST_CRASH_ON_FILE"


def block_row(block: InputBlock) -> dict[str, Any]:
    return {"block": block.index, "payload": pickle.dumps((block.items, block.slots))}


class _NamedBytes(io.BytesIO):
    """Fetched bytes that name their URI, so error messages name it as they name a local file."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name = name


# Per task process, for schemes whose object path is the URI without its scheme: creating an S3 or
# GCS filesystem resolves credentials and regions, once per bucket is enough.
_REUSED_SCHEMES = ("s3", "gs", "gcs")
_filesystems: dict[tuple[str, str], Any] = {}


def read_uri(uri: str) -> bytes:
    """The bytes of the object at `uri`, through pyarrow's filesystems."""
    from pyarrow import fs

    scheme, _, rest = uri.partition("://")
    key = (scheme, rest.split("/", 1)[0])
    if key in _filesystems:
        filesystem, path = _filesystems[key], rest
    else:
        filesystem, path = fs.FileSystem.from_uri(uri)
        if scheme in _REUSED_SCHEMES:
            _filesystems[key] = filesystem
    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.NotFound:
        raise FileNotFoundError("no such file or object")
    if info.type != fs.FileType.File:
        raise IsADirectoryError("not a file (a folder or prefix)")
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


def prepare_input(path: str, error: str | None, options: ScoringOptions) -> Prepared:
    """One input as the local engine prepares it; a URI is fetched first (a failure is its error)."""
    if error is not None:
        return Prepared(path, None, error, 0.0)
    crash_on = os.environ.get(CRASH_TEST_ENV)
    if crash_on and os.path.basename(path) == crash_on:
        os._exit(70)
    if not is_uri(path):
        return prepare_file(path, options)
    start = time.process_time()
    try:
        data = read_uri(path)
    except Exception as err:  # noqa: BLE001 -- one unreadable object must never end a run
        return Prepared(path, None, f"{type(err).__name__}: {err}", time.process_time() - start)
    prepared = prepare_file(path, options, source=_NamedBytes(data, path))
    return Prepared(prepared.path, prepared.image, prepared.error, prepared.seconds + time.process_time() - start,
                    prepared.warnings)


_PILLOW_MAX_PIXELS: list[int | None] = []  # Pillow's own limit, kept before a run changes it


def _set_max_pixels(max_pixels: int | None) -> None:
    """This run's decompression-bomb limit (task processes are reused across runs)."""
    from PIL import Image

    if not _PILLOW_MAX_PIXELS:
        _PILLOW_MAX_PIXELS.append(Image.MAX_IMAGE_PIXELS)
    Image.MAX_IMAGE_PIXELS = _PILLOW_MAX_PIXELS[0] if max_pixels is None else max_pixels


# Exit status of a task process that gave up on a file after `timeout` seconds.
TIMEOUT_EXIT = 71


def _prepare_within(path: str, error: str | None, options: ScoringOptions, timeout: float | None) -> Prepared:
    """prepare_input, or the end of this process after `timeout` seconds: a decode that never
    returns (a hung mount, a pathological file) cannot be interrupted from Python, and Ray then
    treats the task like one that crashed (retried, then the file alone, then an error record)."""
    if timeout is None:
        return prepare_input(path, error, options)
    watchdog = threading.Timer(timeout, os._exit, args=(TIMEOUT_EXIT,))
    watchdog.daemon = True
    watchdog.start()
    try:
        return prepare_input(path, error, options)
    finally:
        watchdog.cancel()


def decode_block(row: dict[str, Any], options: ScoringOptions, timeout: float | None = None) -> list[dict[str, Any]]:
    """Ray Data flat_map: one block row in, one row per file out ({block, slot, prepared})."""
    _set_max_pixels(options.max_pixels)
    items, slots = pickle.loads(row["payload"])
    return [{"block": int(row["block"]), "slot": slot,
             "prepared": pickle.dumps(_prepare_within(item.path, item.error, options, timeout))}
            for item, slot in zip(items, slots)]
