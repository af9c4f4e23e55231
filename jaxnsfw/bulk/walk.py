"""Which files a bulk run reads: every regular file reachable from the inputs, each exactly once.

Real file trees hold links, loops, FIFOs, sockets, devices and names that are not UTF-8. The
rules, shared by every engine (the local pipeline, FileScorer, and any that comes later):

- A file is identified by (device, inode), so a file reached twice (named twice on the command
  line, through a symbolic or hard link, or through a linked folder) gets one record, under the
  first path met in walking order. The others are counted as aliases, never scored again. Inputs
  that cannot be stat'ed (missing, dangling links) are identified by their path instead.
- Folders are walked in sorted order, sub-folders only when recursive. A folder link that leads
  back to a folder being walked (a cycle) becomes one error record naming the link; its siblings
  are walked as usual. A folder reached a second time without a cycle is an alias.
- A symbolic link loop (`a -> b -> a`), a FIFO, a socket or a device becomes an error record
  without being opened: opening a FIFO for reading blocks until a writer comes.
- `exclude` takes (device, inode) pairs never to read: a run's own output file, say.

The walk is lazy (a folder of millions of files starts scoring at once) and deterministic for an
unchanged tree, so a resumed run makes the same choices as the run it resumes.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from typing import Iterable, Iterator

FileKey = tuple[int, int]  # (st_dev, st_ino)

_KIND_OF_MODE = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


@dataclass(frozen=True)
class InputItem:
    """One input to score: a path, or a path with the reason it cannot be read (`error`)."""

    path: str
    error: str | None = None


@dataclass
class WalkCounts:
    """What the walk skipped without a record, for the run's summary."""

    aliases: int = 0  # files or folders reached again through another path
    excluded: int = 0  # the run's own output, and other excluded files

    def line(self) -> str:
        parts = []
        if self.aliases:
            parts.append(f"{self.aliases} already reached through another path")
        if self.excluded:
            parts.append(f"{self.excluded} excluded (this run's own output)")
        return "; ".join(parts)


def not_regular_kind(mode: int) -> str | None:
    """What a non-regular, non-folder file is ("a FIFO (named pipe)", ...), or None."""
    for test, kind in _KIND_OF_MODE:
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else "not a regular file"


def file_key(path: str | os.PathLike) -> FileKey | None:
    """(device, inode) of what `path` leads to, or None when it cannot be stat'ed."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _stat_error(err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return f"SymlinkLoop: the symbolic link never resolves to a file ({err.strerror})"
    return f"{type(err).__name__}: {err.strerror or err}"


@dataclass(frozen=True)
class _Folder:
    key: FileKey
    real: str  # its path with every link resolved


def _contains(outer: str, inner: str) -> bool:
    """Whether the real path `outer` is `inner` or a folder above it."""
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


@dataclass
class _Walk:
    recursive: bool
    exclude: frozenset[FileKey]
    counts: WalkCounts = field(default_factory=WalkCounts)
    seen_files: set[FileKey] = field(default_factory=set)
    seen_paths: set[str] = field(default_factory=set)
    walked_folders: set[FileKey] = field(default_factory=set)

    def input(self, path: str, ancestors: tuple[_Folder, ...], top_level: bool) -> Iterator[InputItem]:
        try:
            info = os.stat(path)
        except OSError as err:
            # Missing, dangling, a loop of links, no permission on a parent: a record names it.
            error = _stat_error(err)
            if path in self.seen_paths:
                self.counts.aliases += 1
                return
            self.seen_paths.add(path)
            yield InputItem(path, error)
            return
        key = (info.st_dev, info.st_ino)
        if stat.S_ISDIR(info.st_mode):
            if top_level or self.recursive:
                yield from self.folder(path, key, ancestors)
            return
        if key in self.exclude:
            self.counts.excluded += 1
            return
        if key in self.seen_files:
            self.counts.aliases += 1
            return
        self.seen_files.add(key)
        kind = not_regular_kind(info.st_mode)
        yield InputItem(path, None if kind is None else f"NotARegularFile: {kind}; not opened")

    def folder(self, path: str, key: FileKey, ancestors: tuple[_Folder, ...]) -> Iterator[InputItem]:
        real = os.path.realpath(path)
        if any(key == folder.key or _contains(real, folder.real) for folder in ancestors):
            yield InputItem(path, "FolderCycle: this folder link leads back to a folder being walked or one "
                                  "above it; not walked")
            return
        if key in self.walked_folders:
            self.counts.aliases += 1
            return
        self.walked_folders.add(key)
        try:
            with os.scandir(path) as entries:
                names = sorted(entry.name for entry in entries)
        except OSError as err:
            yield InputItem(path, f"{type(err).__name__}: cannot list folder: {err.strerror or err}")
            return
        for name in names:
            yield from self.input(os.path.join(path, name), ancestors + (_Folder(key, real),), top_level=False)


def walk_inputs(paths: Iterable[str | os.PathLike], recursive: bool = False,
                exclude: Iterable[FileKey] = (), counts: WalkCounts | None = None) -> Iterator[InputItem]:
    """Every regular file reachable from `paths` once, in order (folders expanded, sorted); inputs
    that cannot be read become items carrying the error. `counts` (optional) is filled with what
    was skipped."""
    walk = _Walk(recursive, frozenset(exclude), counts if counts is not None else WalkCounts())
    for path in paths:
        yield from walk.input(os.fsdecode(path), (), top_level=True)
