"""Records of a distributed run: one shard file per input block, in an output folder.

The commit protocol is what makes a run exactly once, whatever is killed when:

- a shard is written whole under a hidden temporary name, flushed to disk, and only then renamed
  to `part-RRR-BBBBBB.jsonl` (run R, block B); a rename is atomic, so a shard either holds every
  record of its block or does not exist, and a driver killed mid-write leaves only a temporary
  file, removed by the next run;
- the driver alone commits shards, each block once (a task retried by Ray, or a result seen twice,
  cannot write a record twice);
- `--resume` reads every shard (each checked as the local writer checks a records file, a partial
  last record cut), refuses a folder where an input is recorded twice, and the new run skips every
  recorded input and numbers its shards with the next run number, so it never overwrites one.

The folder is locked (flock on `.jaxnsfw.lock`) while a run writes it, as the local engine locks
its output file. Concatenating the shards in name order gives the records in input order.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path
from typing import Iterable

from jaxnsfw.bulk.records import OutputError, Record, read_records
from jaxnsfw.distributed.kinds import RecordKind

LOCK_NAME = ".jaxnsfw.lock"
_SHARD = re.compile(r"^part-(\d{3,})-(\d{6,})\.[a-z]+$")
_TEMPORARY = re.compile(r"^\.part-\d+-\d+\.[a-z]+\.tmp$")


def shard_files(folder: str | os.PathLike) -> list[Path]:
    """The committed shards of `folder`, in name order (run, then block)."""
    return sorted(p for p in Path(folder).iterdir() if _SHARD.match(p.name))


def read_shards(folder: str | os.PathLike) -> list[Record]:
    """Every score record of a folder of shards (JSON Lines or Parquet), in shard order, exact paths."""
    from jaxnsfw.distributed.kinds import read_score_parquet_records

    return [record for shard in shard_files(folder)
            for record in (read_score_parquet_records(shard) if shard.suffix == ".parquet" else read_records(shard))]


class ShardFolder:
    """The output folder of one run: locked, checked (on resume), and written one shard at a time."""

    def __init__(self, folder: str | os.PathLike, kind: RecordKind, resume: bool):
        self.folder, self.kind = Path(folder), kind
        self.recorded: set[str] = set()
        self.committed = 0
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._lock = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as err:
            raise OutputError(f"cannot write record shards in {self.folder}: {err.strerror or err}") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise OutputError(f"{self.folder} is being written by another jaxnsfw run; wait for it to end, "
                              f"or write to another folder") from None
        try:
            self.run = self._scan(resume)
        except BaseException:
            self.close()
            raise

    def _scan(self, resume: bool) -> int:
        """The earlier shards' recorded inputs (on resume) and this run's number."""
        last_run = -1
        where: dict[str, Path] = {}
        for path in sorted(self.folder.iterdir()):
            if _TEMPORARY.match(path.name):
                path.unlink()  # a shard a killed run did not finish: its block is done again
                continue
            match = _SHARD.match(path.name)
            if match is None:
                continue
            if not resume:
                raise OutputError(f"{self.folder} already holds record shards ({path.name}, ...) of an earlier run; "
                                  f"--resume finishes that run, or write to another folder")
            if path.suffix != self.kind.shard_suffix:
                raise OutputError(f"{self.folder} holds {path.suffix} shards ({path.name}); resume with the same "
                                  f"shard format")
            last_run = max(last_run, int(match.group(1)))
            for recorded in self.kind.read_shard(os.fspath(path)):
                if recorded in where:
                    raise OutputError(f"{path}: a second record for {recorded!r} (also in {where[recorded].name}); "
                                      f"these shards were not written by one jaxnsfw run, so they are left untouched")
                where[recorded] = path
        self.recorded = set(where)
        return last_run + 1

    def commit(self, block: int, records: Iterable) -> None:
        """Write one block's records as a shard, atomically (see the module docstring)."""
        name = f"part-{self.run:03d}-{block:06d}{self.kind.shard_suffix}"
        temporary = self.folder / f".{name}.tmp"
        try:
            self.kind.write_shard(os.fspath(temporary), records)
            os.replace(temporary, self.folder / name)
            directory = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(directory)  # the rename itself on disk
            finally:
                os.close(directory)
        except OSError as err:
            raise OutputError(f"cannot write record shard {self.folder / name}: {err.strerror or err}") from None
        self.committed += 1

    def close(self) -> None:
        if self._lock >= 0:
            os.close(self._lock)  # releases the lock
            self._lock = -1
