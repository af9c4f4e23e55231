"""Result records of a bulk run: written as they come, flushed, and read back to resume.

One record per input: `path`, `score` (empty on failure), `error` ("ErrorClass: message", empty on
success), then `mode`, `frame` and `view` (which frame and rendering gave the score) and `seconds`
(CPU time spent decoding and preprocessing that input). JSON Lines, or CSV when the file ends in
.csv. A run that is killed leaves at most one partial last line, which resuming cuts off.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

FIELDS = ("path", "score", "error", "mode", "frame", "view", "seconds")


@dataclass(frozen=True)
class Record:
    path: str
    score: float | None = None
    error: str | None = None
    mode: str | None = None
    frame: int | None = None
    view: str | None = None
    seconds: float | None = None


def output_format(path: str | os.PathLike | None) -> str:
    return "csv" if path is not None and Path(path).suffix.lower() == ".csv" else "jsonl"


def _cut_partial_last_line(path: Path) -> None:
    """Drop bytes after the last newline: a record cut short when the previous run was killed."""
    with open(path, "rb+") as handle:
        data = handle.read()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            handle.truncate(end)


def recorded_paths(path: str | os.PathLike) -> set[str]:
    """The inputs an earlier run already wrote a record for (successes and failures alike)."""
    path = Path(path)
    if not path.exists():
        return set()
    _cut_partial_last_line(path)
    text = path.read_text(encoding="utf-8")
    if output_format(path) == "csv":
        return {row["path"] for row in csv.DictReader(io.StringIO(text))}
    done = set()
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                done.add(json.loads(line)["path"])
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{path}:{number}: not a jaxnsfw record ({err}); refusing to resume into it")
    return done


class RecordWriter:
    """Appends records to a file (or writes JSON Lines to stdout), flushing each one."""

    def __init__(self, path: str | os.PathLike | None, append: bool = False):
        self.format = output_format(path)
        if path is None:
            self._stream: TextIO = sys.stdout
            self._owned = False
        else:
            fresh = not (append and Path(path).exists() and Path(path).stat().st_size > 0)
            self._stream = open(path, "a" if append else "w", encoding="utf-8", newline="")
            self._owned = True
            if self.format == "csv" and fresh:
                self._stream.write(",".join(FIELDS) + "\r\n")
        self._csv = csv.DictWriter(self._stream, FIELDS) if self.format == "csv" else None

    def write(self, record: Record) -> None:
        row = asdict(record)
        if self._csv is not None:
            self._csv.writerow({k: ("" if v is None else v) for k, v in row.items()})
        else:
            self._stream.write(json.dumps({k: v for k, v in row.items() if v is not None}) + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._owned:
            self._stream.close()

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
