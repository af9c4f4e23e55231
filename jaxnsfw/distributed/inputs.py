"""What a distributed run reads, cut into numbered blocks: one decoding task and one shard each.

Inputs come from the same walk as the local engine (jaxnsfw.bulk.walk: links, loops, FIFOs,
aliases; unreadable inputs are items that carry their error), or from a manifest: one path or URI
per line. A URI (`scheme://...`) is read by a CPU task through pyarrow's filesystems (S3, GCS,
HDFS, local `file://`), so the driver never touches the data; a plain path is walked like a PATH
argument. Block numbers depend only on the order of the inputs, which is deterministic for an
unchanged tree and manifest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Iterator

from jaxnsfw.bulk.walk import FileKey, InputItem, WalkCounts, walk_inputs

DEFAULT_BLOCK_SIZE = 64


def is_uri(entry: str) -> bool:
    """`s3://bucket/key`, `file:///data/a.jpg`, ...: read through pyarrow.fs, not the local walk."""
    scheme, sep, _ = entry.partition("://")
    return bool(sep) and scheme.replace("+", "").replace("-", "").replace(".", "").isalnum()


@dataclass(frozen=True)
class InputBlock:
    """Inputs `items` (in order) under one block number; `slots` are their places in the block."""

    index: int
    items: tuple[InputItem, ...]
    slots: tuple[int, ...]


class ManifestError(ValueError):
    """The manifest cannot be read; the message names it."""


def manifest_entries(manifest: str | os.PathLike) -> list[str]:
    """Non-blank lines of a manifest (a local file, or a URI read through pyarrow.fs), '#' comment
    lines left out, surrounding spaces stripped."""
    name = os.fsdecode(manifest)
    try:
        if is_uri(name):
            from jaxnsfw.distributed.decode import read_uri

            lines = read_uri(name).splitlines()
        else:
            with open(manifest, "rb") as handle:
                lines = handle.read().splitlines()
    except Exception as err:  # noqa: BLE001 -- OSError, or pyarrow's errors for a remote manifest
        detail = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise ManifestError(f"cannot read manifest {name}: {detail}") from None
    entries = []
    for line in lines:
        text = os.fsdecode(line.strip())  # a local name may be any bytes, as on the command line
        if text and not text.startswith("#"):
            entries.append(text)
    return entries


def manifest_inputs(entries: Iterable[str], recursive: bool, exclude: Iterable[FileKey] = (),
                    counts: WalkCounts | None = None) -> Iterator[InputItem]:
    """The manifest's local paths through one walk (so aliases and cycles follow the walk's rules),
    then its URIs in manifest order, each once (a repeated URI counts as an alias)."""
    counts = counts if counts is not None else WalkCounts()
    entries = list(entries)
    yield from walk_inputs([e for e in entries if not is_uri(e)], recursive, exclude, counts)
    seen: set[str] = set()
    for uri in (e for e in entries if is_uri(e)):
        if uri in seen:
            counts.aliases += 1
            continue
        seen.add(uri)
        yield InputItem(uri)


def input_blocks(items: Iterable[InputItem], block_size: int, first_index: int = 0) -> Iterator[InputBlock]:
    """Consecutive runs of `block_size` items, numbered from `first_index`."""
    batch: list[InputItem] = []
    index = first_index
    for item in items:
        batch.append(item)
        if len(batch) == block_size:
            yield InputBlock(index, tuple(batch), tuple(range(len(batch))))
            batch, index = [], index + 1
    if batch:
        yield InputBlock(index, tuple(batch), tuple(range(len(batch))))
