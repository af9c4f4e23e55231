"""Result records of a bulk run: written as they come, flushed, locked, and read back to resume.

One record per input: `path`, `score` (empty on failure), `error` ("ErrorClass: message", empty on
success), then `mode`, `frame` and `view` (which frame and rendering gave the score), `seconds`
(CPU time spent decoding and preprocessing that input) and `path_bytes`. JSON Lines, or CSV (RFC
4180, written and read with Python's csv module) when the file name ends in .csv.

File names that are not valid UTF-8 (Linux allows any bytes but '/' and NUL) cannot be written
as text losslessly. For those, `path` holds a readable form (undecodable bytes shown as U+FFFD)
and `path_bytes` the exact name, base64-encoded; `path_bytes` is absent (JSON) or empty (CSV) for
every other name. `read_records` gives back the exact names (as Python's os.fsdecode does).

An output file is locked (flock) while a run writes it, so a second run on the same file stops
at once with a message instead of interleaving records. A run killed mid-write leaves at most one
partial last record; `open_records(..., resume=True)` checks the whole file first, refuses (and
leaves untouched) anything that is not a jaxnsfw record file, and only then cuts that partial
record off.
"""

from __future__ import annotations

import base64
import binascii
import csv
import fcntl
import io
import json
import math
import os
import stat
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, TextIO, TypeVar

FIELDS = ("path", "score", "error", "mode", "frame", "view", "seconds", "path_bytes")
_JSON_RECORD_START = b'{"path": '


class OutputError(Exception):
    """The records cannot be written or resumed; the message says which file and why."""


class OutputClosed(OutputError):
    """The reader of standard output went away (`jaxnsfw score ... | head`)."""


@dataclass(frozen=True)
class Record:
    path: str  # the exact name, as os.fsdecode gives it (undecodable bytes as surrogate escapes)
    score: float | None = None
    error: str | None = None
    mode: str | None = None
    frame: int | None = None
    view: str | None = None
    seconds: float | None = None


def output_format(path: str | os.PathLike | None) -> str:
    return "csv" if path is not None and Path(path).suffix.lower() == ".csv" else "jsonl"


def encode_path(path: str) -> tuple[str, str | None]:
    """(readable UTF-8 text, base64 of the exact bytes or None when the text is already exact)."""
    try:
        path.encode("utf-8")
        return path, None
    except UnicodeEncodeError:
        raw = os.fsencode(path)
        return raw.decode("utf-8", "replace"), base64.b64encode(raw).decode("ascii")


def decode_path(text: str, path_bytes: str | None) -> str:
    """The exact name a record stands for (see encode_path)."""
    return os.fsdecode(base64.b64decode(path_bytes, validate=True)) if path_bytes else text


def _text(value: str) -> str:
    """Any string as valid UTF-8 (a lone surrogate from a file name inside an error message)."""
    return value.encode("utf-8", "replace").decode("utf-8")


def record_fields(record: Record) -> dict[str, object]:
    """The record's fields as written, None for empty ones, path encoded (see encode_path)."""
    row: dict[str, object] = {k: (_text(v) if isinstance(v, str) else v) for k, v in asdict(record).items()}
    row["path"], row["path_bytes"] = encode_path(record.path)
    return row


# ---------------------------------------------------------------------------------------------
# Reading: every complete record checked, the byte length they span, and the partial tail


@dataclass(frozen=True)
class _Scan:
    records: list[Record]
    complete_bytes: int  # length of the file up to the end of its last complete record


def _invalid(where: str, problem: str) -> OutputError:
    return OutputError(f"{where}: {problem}; this is not a jaxnsfw records file (or it was edited), "
                       f"so it is left untouched")


_Number = TypeVar("_Number", int, float)


def _number(values: dict, name: str, kind: type[_Number]) -> _Number | None:
    value = values.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = kind(value)  # ValueError for text that is not a number of this kind
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and isinstance(value, float)):
        raise ValueError(f"field {name!r} is {value!r}")
    return kind(value)


def _string(values: dict, name: str) -> str | None:
    value = values.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"field {name!r} is {value!r}")
    return value


def _record_from(values: dict, where: str) -> Record:
    """A checked Record from a JSON object or a CSV row (CSV: empty strings for empty fields)."""
    try:
        unknown = set(values) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        text = _string(values, "path")
        if text is None:
            raise ValueError("no path")
        path = decode_path(text, _string(values, "path_bytes"))
        score, error = _number(values, "score", float), _string(values, "error")
        if (score is None) == (error is None):
            raise ValueError("a record has either a score or an error")
        if score is not None and not (math.isfinite(score) and 0.0 <= score <= 1.0):
            raise ValueError(f"score {score!r} is not a probability")
        return Record(path, score, error, _string(values, "mode"), _number(values, "frame", int),
                      _string(values, "view"), _number(values, "seconds", float))
    except (ValueError, TypeError, binascii.Error) as err:
        raise _invalid(where, str(err)) from None


def record_from_fields(values: dict, where: str) -> Record:
    """A checked Record from the fields of one written record (a JSON object, a CSV row, a Parquet
    row written by jaxnsfw.distributed); OutputError naming `where` if it is not one."""
    return _record_from(values, where)


def _scan_jsonl(data: bytes, name: str) -> _Scan:
    records: list[Record] = []
    end = 0
    while True:
        newline = data.find(b"\n", end)
        if newline < 0:
            break
        line, number = data[end:newline], len(records) + 1
        try:
            values = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise _invalid(f"{name}, line {number}", f"not a JSON record ({err})") from None
        if not isinstance(values, dict):
            raise _invalid(f"{name}, line {number}", "not a JSON object")
        records.append(_record_from(values, f"{name}, line {number}"))
        end = newline + 1
    tail = data[end:]
    if tail and not (tail.startswith(_JSON_RECORD_START) or _JSON_RECORD_START.startswith(tail)):
        raise _invalid(f"{name}, last line", "the text after the last complete line is not the start of a record")
    return _Scan(records, end)


def _scan_csv(data: bytes, name: str) -> _Scan:
    text = data.decode("utf-8", "surrogateescape")  # a multi-byte character cut by a kill stays bytes
    consumed = 0

    def lines() -> Iterator[str]:
        nonlocal consumed
        for line in io.StringIO(text, newline=""):
            consumed += len(line)
            yield line

    header = ",".join(FIELDS) + "\r\n"
    if len(text) < len(header):
        if header.startswith(text):
            return _Scan([], 0)  # killed while writing the header
        raise _invalid(name, f"its first line is not the header {','.join(FIELDS)}")
    reader = csv.reader(lines(), strict=True)
    records: list[Record] = []
    complete = 0
    try:
        next(reader)  # the header, checked as text below (line ending included)
        if text[:consumed] != header:
            raise _invalid(name, f"its first line is {text[:consumed]!r}, expected {header!r}")
        complete = consumed
        for row in reader:
            where = f"{name}, record {len(records) + 1}"
            if not text[:consumed].endswith("\r\n"):
                if consumed == len(text):
                    break  # the last row, cut short by a kill: everything before it is complete
                raise _invalid(where, "a line that does not end in CRLF, as jaxnsfw writes them")
            if len(row) != len(FIELDS):
                raise _invalid(where, f"{len(row)} fields, expected {len(FIELDS)}")
            records.append(_record_from(dict(zip(FIELDS, row)), where))
            complete = consumed
    except csv.Error as err:
        if consumed < len(text):
            raise _invalid(f"{name}, record {len(records) + 1}", f"not CSV ({err})") from None
        # An unterminated quoted field at the very end: a record cut short by a kill.
    complete_bytes = len(text[:complete].encode("utf-8", "surrogateescape"))
    try:
        data[:complete_bytes].decode("utf-8")
    except UnicodeDecodeError as err:
        raise _invalid(name, f"not UTF-8 text ({err})") from None
    return _Scan(records, complete_bytes)


def _scan(data: bytes, name: str, fmt: str) -> tuple[_Scan, set[str]]:
    """The file's complete records, and their paths (each once: jaxnsfw writes one record per file)."""
    scan = _scan_csv(data, name) if fmt == "csv" else _scan_jsonl(data, name)
    paths: set[str] = set()
    for number, record in enumerate(scan.records, 1):
        if record.path in paths:
            raise _invalid(f"{name}, record {number}", f"a second record for {record.path!r}")
        paths.add(record.path)
    return scan, paths


def read_records(path: str | os.PathLike) -> list[Record]:
    """The complete records of a file a run wrote (a partial last one left out), exact paths."""
    data = Path(path).read_bytes()
    return _scan(data, os.fsdecode(path), output_format(path))[0].records


def recorded_paths(path: str | os.PathLike) -> set[str]:
    """The inputs an earlier run already wrote a record for (successes and failures alike)."""
    if not os.path.exists(path):
        return set()
    return _scan(Path(path).read_bytes(), os.fsdecode(path), output_format(path))[1]


# ---------------------------------------------------------------------------------------------
# Writing


class RecordWriter:
    """Writes records to a file (locked for this run) or as JSON Lines to stdout, one flush each.

    `resume`: keep the records already in the file (checked first; `recorded` holds their paths)
    and append; otherwise the file is started afresh. OutputError for anything that stops writing:
    the file cannot be opened, another run holds it, it is not a records file, the disk is full,
    the reader of stdout went away."""

    def __init__(self, path: str | os.PathLike | None, resume: bool = False):
        self.path = None if path is None else os.fsdecode(path)
        self.format = output_format(path)
        self.recorded: set[str] = set()
        self.written = 0
        self.key: tuple[int, int] | None = None
        if self.path is None:
            self._stream: TextIO = sys.stdout
            self._owned = False
        else:
            self._stream = self._open(self.path, resume)
            self._owned = True
        self._csv = csv.writer(self._stream, lineterminator="\r\n") if self.format == "csv" else None
        if self._csv is not None and self._owned and self._stream.tell() == 0:
            self._write_line(lambda: self._csv.writerow(FIELDS))

    def _open(self, path: str, resume: bool) -> TextIO:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as err:
            raise OutputError(f"cannot open {path} for writing records: {err.strerror or err}") from None
        try:
            info = os.fstat(fd)
            self.key = (info.st_dev, info.st_ino)
            regular = stat.S_ISREG(info.st_mode)
            if regular:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise OutputError(f"{path} is being written by another jaxnsfw run; wait for it to end, "
                                      f"or write to another file") from None
            if resume and regular:
                with open(fd, "rb", closefd=False) as reader:
                    data = reader.read()
                scan, self.recorded = _scan(data, path, self.format)
                if scan.complete_bytes < len(data):
                    os.ftruncate(fd, scan.complete_bytes)  # the record a kill cut short
                os.lseek(fd, 0, os.SEEK_END)
            elif resume:
                raise OutputError(f"cannot resume {path}: it is not a regular file")
            elif regular:
                os.ftruncate(fd, 0)
            return open(fd, "w", encoding="utf-8", newline="", closefd=True)
        except OSError as err:
            os.close(fd)
            raise OutputError(f"cannot write records to {path}: {err.strerror or err}") from None
        except BaseException:
            os.close(fd)
            raise

    def _write_line(self, write) -> None:
        try:
            write()
            self._stream.flush()
        except BrokenPipeError:
            raise OutputClosed(f"standard output was closed after {self.written} records; stopping") from None
        except OSError as err:
            raise OutputError(f"cannot write records to {self.path or 'standard output'} after {self.written} "
                              f"records: {err.strerror or err}") from None

    def write(self, record: Record) -> None:
        row = record_fields(record)
        if self._csv is not None:
            self._write_line(lambda: self._csv.writerow(["" if row[k] is None else row[k] for k in FIELDS]))
        else:
            self._write_line(lambda: self._stream.write(
                json.dumps({k: v for k, v in row.items() if v is not None}, ensure_ascii=False) + "\n"))
        self.written += 1

    def close(self) -> None:
        if self._owned:
            try:
                self._stream.close()  # closing the descriptor releases the lock
            except OSError:
                pass

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
