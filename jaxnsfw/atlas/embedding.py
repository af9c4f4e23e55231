"""Embeddings of many images: the bulk pipeline's records, each with the 1024-d global-pool features
of the view that gave its score, written to Parquet (or .npz) and read back.

A Parquet file has its index at the end, so it cannot be appended to in place. The writer therefore
writes row groups (flushed every FLUSH_ROWS records or FLUSH_SECONDS) into a hidden temporary file
beside the output and renames it over the output when the run ends, Ctrl-C and `kill PID` included:
the output is always a complete Parquet file or absent. `--resume` copies the complete output's
records into the new file first and skips their inputs. A run killed with SIGKILL (or a power cut)
loses the records of that run only; the file from before it is untouched.

Columns: the score records' fields (jaxnsfw.bulk.records.FIELDS, same encoding: readable `path` and
base64 `path_bytes` for names that are not UTF-8) and `embedding`, a fixed-size list of 1024
float32 (null for an input that failed).
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from jaxnsfw.atlas.errors import AtlasInputError, require_extra
from jaxnsfw.bulk.records import FIELDS, OutputError, Record, record_fields, record_from_fields

EMBEDDING_DIMENSIONS = 1024
FLUSH_ROWS = 64
FLUSH_SECONDS = 5.0
FORMATS = (".parquet", ".npz")
NO_FRAME = -1  # .npz: the frame of an error record (an int64 array has no empty value)


@dataclass(frozen=True)
class EmbeddingTable:
    """Records and their embeddings, in input order; failed inputs have a NaN score and a NaN row."""

    records: tuple[Record, ...]
    embeddings: np.ndarray  # (N, 1024) float32

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.records]

    @property
    def scores(self) -> np.ndarray:
        return np.array([np.nan if r.score is None else r.score for r in self.records], dtype=np.float64)

    @property
    def ok(self) -> np.ndarray:
        """Which rows have an embedding (the input was read and scored)."""
        return np.array([r.error is None for r in self.records], dtype=bool)

    def usable(self) -> "EmbeddingTable":
        keep = self.ok
        return EmbeddingTable(tuple(r for r, k in zip(self.records, keep) if k), self.embeddings[keep])


def output_kind(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise OutputError(f"{os.fsdecode(path)}: embeddings are written as .parquet or .npz, "
                          f"not {suffix or 'no suffix'!r}")
    return suffix


def _schema(dimensions: int = EMBEDDING_DIMENSIONS):
    import pyarrow as pa

    kinds = {"score": pa.float64(), "frame": pa.int64(), "seconds": pa.float64()}
    return pa.schema([*((name, kinds.get(name, pa.string())) for name in FIELDS),
                      ("embedding", pa.list_(pa.float32(), dimensions))])


def _rows_to_table(rows: list[dict], embeddings: list[np.ndarray | None], dimensions: int):
    import pyarrow as pa

    flat = np.zeros((len(rows), dimensions), np.float32)
    valid = np.zeros(len(rows), dtype=bool)
    for i, e in enumerate(embeddings):
        if e is not None:
            flat[i], valid[i] = e, True
    columns = [pa.array([row[name] for row in rows], type=field.type)
               for name, field in zip(FIELDS, _schema(dimensions))]
    values = pa.array(flat.ravel(), type=pa.float32())
    embedding = pa.FixedSizeListArray.from_arrays(values, dimensions, mask=pa.array(~valid))
    return pa.Table.from_arrays([*columns, embedding], schema=_schema(dimensions))


def embedding_table(records: Sequence[Record], embeddings: Sequence[np.ndarray | None],
                    dimensions: int = EMBEDDING_DIMENSIONS):
    """The Parquet table of records and their embeddings (None for an error record), as
    `jaxnsfw embed` writes it; also each shard of `jaxnsfw embed --engine ray`."""
    return _rows_to_table([record_fields(r) for r in records], list(embeddings), dimensions)


def read_embeddings(path: str | os.PathLike) -> EmbeddingTable:
    """The records and embeddings of a file `jaxnsfw embed` wrote (.parquet or .npz), checked, or
    of the folder of Parquet shards `jaxnsfw embed --engine ray` wrote (in shard order). A name
    without either suffix (an upload saved under another name) is read by its first bytes.

    AtlasInputError when it is not readable, has no embeddings, or is not such a file."""
    name = os.fsdecode(path)
    if os.path.isdir(path):
        return _read_shard_folder(name)
    if not os.path.isfile(path):
        raise AtlasInputError(f"{name}: no such file")
    suffix = Path(name).suffix.lower()
    kind = suffix if suffix in FORMATS else _sniffed_kind(name)
    try:
        return _read_parquet(name) if kind == ".parquet" else _read_npz(name)
    except OutputError as err:
        raise AtlasInputError(str(err)) from None


def _read_shard_folder(name: str) -> EmbeddingTable:
    from jaxnsfw.distributed.shards import shard_files

    shards = [p for p in shard_files(name) if p.suffix == ".parquet"]
    if not shards:
        raise AtlasInputError(f"{name}: a folder with no embedding shards (part-*.parquet, written by "
                              f"`jaxnsfw embed --engine ray`)")
    tables = [_read_parquet(os.fspath(shard)) for shard in shards]
    dimensions = {t.embeddings.shape[1] for t in tables}
    if len(dimensions) != 1:
        raise AtlasInputError(f"{name}: its shards hold embeddings of {sorted(dimensions)} dimensions")
    records = tuple(r for t in tables for r in t.records)
    if len({r.path for r in records}) != len(records):
        raise AtlasInputError(f"{name}: an input is recorded in two shards; these were not written by one run")
    return EmbeddingTable(records, np.concatenate([t.embeddings for t in tables]))


def _sniffed_kind(name: str) -> str:
    with open(name, "rb") as file:
        start = file.read(4)
    if start == b"PAR1":
        return ".parquet"
    if start == b"PK\x03\x04":
        return ".npz"  # a zip archive, as numpy writes .npz
    raise AtlasInputError(f"{name}: not an embeddings file (expected Parquet or .npz written by `jaxnsfw embed`)")


def _read_parquet(name: str) -> EmbeddingTable:
    require_extra("pyarrow")
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(name)
    except Exception as err:  # noqa: BLE001 -- pyarrow's errors for a file that is not Parquet
        raise AtlasInputError(f"{name}: not a readable Parquet file ({err})") from None
    if "embedding" not in table.column_names:
        raise AtlasInputError(f"{name}: has no 'embedding' column (columns: {', '.join(table.column_names)}); "
                              f"make one with `jaxnsfw embed PATH... --out FILE.parquet`")
    embedding = table.column("embedding").combine_chunks()
    other = table.drop_columns(["embedding"]).to_pylist()
    records = tuple(record_from_fields(values, f"{name}, row {number}") for number, values in enumerate(other, 1))
    dimensions = embedding.type.list_size if hasattr(embedding.type, "list_size") else None
    if dimensions is None:
        raise AtlasInputError(f"{name}: 'embedding' is {embedding.type}, not a fixed-size list of floats")
    matrix = np.full((len(records), dimensions), np.nan, np.float32)
    valid = ~np.asarray(embedding.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if valid.any():
        flat = embedding.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        matrix[valid] = flat.reshape(-1, dimensions)
    for number, (record, has) in enumerate(zip(records, valid), 1):
        if (record.error is None) != has:
            raise AtlasInputError(f"{name}, row {number}: a scored record needs an embedding, an error record none")
    return EmbeddingTable(records, matrix)


def _read_npz(name: str) -> EmbeddingTable:
    try:
        with np.load(name, allow_pickle=False) as npz:
            arrays = dict(npz)
    except Exception as err:  # noqa: BLE001 -- whatever numpy raises for a file that is not .npz
        raise AtlasInputError(f"{name}: not a readable .npz file ({err})") from None
    if "embedding" not in arrays:
        raise AtlasInputError(f"{name}: has no 'embedding' array (arrays: {', '.join(sorted(arrays))}); "
                              f"make one with `jaxnsfw embed PATH... --out FILE.npz`")
    missing = [f for f in FIELDS if f not in arrays]
    if missing:
        raise AtlasInputError(f"{name}: lacks the record arrays {missing}")
    count = len(arrays["path"])
    records = tuple(record_from_fields({f: _npz_value(f, arrays[f][i]) for f in FIELDS}, f"{name}, row {i + 1}")
                    for i in range(count))
    return EmbeddingTable(records, np.asarray(arrays["embedding"], np.float32).reshape(count, -1))


def _npz_value(name: str, value: np.generic) -> object:
    """An .npz cell as the record readers take it: '', NaN and NO_FRAME mean empty."""
    item = value.item()
    empty = item == "" or (isinstance(item, float) and np.isnan(item)) or (name == "frame" and item == NO_FRAME)
    return None if empty else item


# ---------------------------------------------------------------------------------------------
# Writing


class EmbeddingWriter:
    """Writes records with embeddings to .parquet (row groups as it goes) or .npz (at the end); the
    output is locked while a run writes it (see the module docstring for how it is committed).

    `resume`: keep the records of the existing output and skip their inputs (`recorded`).
    OutputError for anything that stops writing, naming the file."""

    def __init__(self, path: str | os.PathLike, resume: bool = False, dimensions: int = EMBEDDING_DIMENSIONS):
        self.path = os.fsdecode(path)
        self.kind = output_kind(path)
        if self.kind == ".parquet":
            require_extra("pyarrow")
        self.dimensions = dimensions
        self.recorded: set[str] = set()
        self.written = 0
        self._temporary = os.path.join(os.path.dirname(self.path) or ".", f".{os.path.basename(self.path)}.tmp")
        self._rows: list[dict] = []
        self._embeddings: list[np.ndarray | None] = []
        self._kept: list[tuple[dict, np.ndarray | None]] = []  # npz: everything, written at the end
        self._last_flush = time.monotonic()
        self._parquet = None
        self._lock = self._open_locked()
        try:
            previous = self._read_previous() if resume else None
            self.keys = [self._key(self._lock)]
            if self.kind == ".parquet":
                import pyarrow.parquet as pq

                self._parquet = pq.ParquetWriter(self._temporary, _schema(dimensions))
                self.keys.append(self._key_of(self._temporary))
                if previous is not None and previous.records:
                    self._parquet.write_table(_rows_to_table([record_fields(r) for r in previous.records],
                                                             [_row_or_none(e) for e in previous.embeddings],
                                                             dimensions))
            elif previous is not None:
                self._kept = [(record_fields(r), _row_or_none(e))
                              for r, e in zip(previous.records, previous.embeddings)]
        except OSError as err:
            self._abandon()
            raise OutputError(f"cannot write embeddings to {self.path}: {err.strerror or err}") from None
        except BaseException:
            self._abandon()
            raise

    @staticmethod
    def _key(fd: int) -> tuple[int, int]:
        info = os.fstat(fd)
        return info.st_dev, info.st_ino

    @staticmethod
    def _key_of(path: str) -> tuple[int, int]:
        info = os.stat(path)
        return info.st_dev, info.st_ino

    def _open_locked(self) -> int:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as err:
            raise OutputError(f"cannot open {self.path} for writing embeddings: {err.strerror or err}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OutputError(f"{self.path} is not a regular file; embeddings are written to a file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(f"{self.path} is being written by another jaxnsfw run; wait for it to end, "
                              f"or write to another file") from None
        return fd

    def _read_previous(self) -> EmbeddingTable | None:
        if os.path.getsize(self.path) == 0:
            return None  # created by this lock, or by a run killed before its first commit
        try:
            previous = read_embeddings(self.path)
        except AtlasInputError as err:
            raise OutputError(f"cannot resume: {err}; it is left untouched") from None
        paths = [r.path for r in previous.records]
        self.recorded = set(paths)
        if len(self.recorded) != len(paths):
            raise OutputError(f"cannot resume {self.path}: an input is recorded twice; it is left untouched")
        if previous.embeddings.shape[1] != self.dimensions:
            raise OutputError(f"cannot resume {self.path}: its embeddings have {previous.embeddings.shape[1]} "
                              f"dimensions, not {self.dimensions}")
        return previous

    def write(self, record: Record, embedding: np.ndarray | None) -> None:
        if (embedding is None) != (record.error is not None):
            raise ValueError(f"{record.path}: a scored record needs an embedding, an error record none")
        row = record_fields(record)
        if self.kind == ".npz":
            self._kept.append((row, None if embedding is None else np.asarray(embedding, np.float32)))
        else:
            self._rows.append(row)
            self._embeddings.append(embedding)
            if len(self._rows) >= FLUSH_ROWS or time.monotonic() - self._last_flush >= FLUSH_SECONDS:
                self.flush()
        self.written += 1

    def flush(self) -> None:
        """Write the pending records as one row group (Parquet)."""
        if self._parquet is None or not self._rows:
            return
        try:
            self._parquet.write_table(_rows_to_table(self._rows, self._embeddings, self.dimensions))
        except OSError as err:
            raise OutputError(f"cannot write embeddings to {self._temporary} after {self.written} records: "
                              f"{err.strerror or err}") from None
        self._rows, self._embeddings = [], []
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Commit: the complete file replaces the output (nothing to do after an earlier close)."""
        if self._lock < 0:
            return
        try:
            if self._parquet is not None:
                self.flush()
                self._parquet.close()
                self._parquet = None
            else:
                self._write_npz()
            _fsync(self._temporary)
            os.replace(self._temporary, self.path)
        except OSError as err:
            raise OutputError(f"cannot write embeddings to {self.path}: {err.strerror or err}") from None
        finally:
            self._abandon()

    def _write_npz(self) -> None:
        rows = [row for row, _ in self._kept]
        matrix = np.full((len(rows), self.dimensions), np.nan, np.float32)
        for i, (_, e) in enumerate(self._kept):
            if e is not None:
                matrix[i] = e
        arrays: dict[str, np.ndarray] = {}
        for name in FIELDS:
            values = [row[name] for row in rows]
            if name in ("score", "seconds"):
                arrays[name] = np.array([np.nan if v is None else v for v in values], np.float64)
            elif name == "frame":
                arrays[name] = np.array([NO_FRAME if v is None else v for v in values], np.int64)
            else:
                arrays[name] = np.array(["" if v is None else v for v in values], dtype=str)
        with open(self._temporary, "wb") as file:
            np.savez(file, embedding=matrix, **arrays)  # type: ignore[arg-type]  # numpy's stub: allow_pickle

    def _abandon(self) -> None:
        """Drop the temporary file (if not committed) and release the lock."""
        if self._parquet is not None:
            try:
                self._parquet.close()
            except Exception:  # noqa: BLE001 -- closing a half-written file on the way out
                pass
            self._parquet = None
        if os.path.exists(self._temporary):
            os.unlink(self._temporary)
        if self._lock >= 0:
            if os.path.getsize(self.path) == 0 and not self.written and not self.recorded:
                os.unlink(self.path)  # made only to hold the lock
            os.close(self._lock)
            self._lock = -1

    def __enter__(self) -> "EmbeddingWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _row_or_none(row: np.ndarray) -> np.ndarray | None:
    return None if np.isnan(row).all() else row


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# The Python entry point


def embed(paths: Iterable[str | os.PathLike], recursive: bool = False, out: str | os.PathLike | None = None,
          resume: bool = False, scorer=None, workers: int | None = None,
          on_record: Callable[[Record], None] | None = None) -> EmbeddingTable:
    """Scores and embeddings of every file reachable from `paths`, one record per file in input order
    (jaxnsfw.bulk's walk and pipeline; failures are error records with a NaN embedding row).

    `out`: also write them (.parquet or .npz; `resume` keeps what it holds and skips those inputs,
    which are then part of the returned table). `scorer`: a jaxnsfw.FileScorer to use (default: one
    with `workers` decoding processes, closed at the end). `on_record`: called after each record.
    The table is held in memory (4 kB per image); for collections past memory, write `out` and read
    it back in parts."""
    from jaxnsfw.bulk.pipeline import FileScorer

    owned = scorer is None
    writer = EmbeddingWriter(out, resume=resume) if out is not None else None
    records: list[Record] = []
    rows: list[np.ndarray | None] = []
    try:
        if writer is not None and writer.recorded:
            previous = read_embeddings(writer.path)
            records.extend(previous.records)
            rows.extend(_row_or_none(e) for e in previous.embeddings)
        scorer = scorer or FileScorer(workers=workers)
        skip: Sequence[str] = sorted(writer.recorded) if writer is not None else ()
        exclude = writer.keys if writer is not None else []
        for record, embedding in scorer.embed(paths, recursive, skip, exclude):
            if writer is not None:
                writer.write(record, embedding)
            records.append(record)
            rows.append(embedding)
            if on_record is not None:
                on_record(record)
    finally:
        if owned and scorer is not None:
            scorer.close()
        if writer is not None:
            writer.close()
    matrix = np.full((len(records), EMBEDDING_DIMENSIONS), np.nan, np.float32)
    for i, e in enumerate(rows):
        if e is not None:
            matrix[i] = e
    return EmbeddingTable(tuple(records), matrix)
