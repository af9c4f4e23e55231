"""What a distributed run produces per input: a record kind.

The pipeline (walking, blocks, CPU decoding tasks, retries, shards, resume) is the same for every
kind; a kind says which actor turns a batch of prepared inputs into records, how a record is
written into a shard and read back, and what the record of an input that kills its task says.
`score_kind` is the one `jaxnsfw score` uses, `embed_kind` the one `jaxnsfw embed` uses (records
that carry the 1024-d embedding, in Parquet shards with the columns of `jaxnsfw embed --out
FILE.parquet`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol


class RecordLike(Protocol):
    @property
    def path(self) -> str: ...

    @property
    def error(self) -> str | None: ...


@dataclass(frozen=True)
class EmbeddedRecord:
    """A score record with the embedding of the view that gave its score (None for an error)."""

    record: Any  # jaxnsfw.bulk.Record
    embedding: Any  # numpy (1024,) float32, or None

    @property
    def path(self) -> str:
        return self.record.path

    @property
    def error(self) -> str | None:
        return self.record.error


@dataclass(frozen=True)
class RecordKind:
    """`actor`: a callable class for Ray Data's map_batches, built with `actor_kwargs` (it loads the
    model once); called with numpy batches {block, slot, prepared} (prepared: pickled
    jaxnsfw.bulk.Prepared), it returns {block, slot, result} (result: a pickled (record, warnings)
    pair, the record having `path` and `error`, the warnings Pillow's about that file).
    `write_shard(path, records)` writes one shard; `read_shard(path)` checks one and returns the
    paths it records (a partial last record cut, as the local writer's resume does).
    `crashed(path, message)`: the record of an input whose decoding task died on every try."""

    name: str
    actor: type
    actor_kwargs: dict[str, Any]
    write_shard: Callable[[str, Iterable[Any]], None]
    read_shard: Callable[[str], set[str]]
    crashed: Callable[[str, str], RecordLike]
    shard_suffix: str = ".jsonl"


def write_score_shard(path: str, records: Iterable[Any]) -> None:
    """One shard of score records, exactly as `jaxnsfw score --out FILE.jsonl` writes them."""
    from jaxnsfw.bulk.records import RecordWriter

    with RecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    _fsync(path)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # on disk before the rename that publishes it
    finally:
        os.close(fd)


def _parquet_schema():
    import pyarrow as pa

    kinds = {"score": pa.float64(), "frame": pa.int64(), "seconds": pa.float64()}
    from jaxnsfw.bulk.records import FIELDS

    return pa.schema([(name, kinds.get(name, pa.string())) for name in FIELDS])


def write_score_parquet_shard(path: str, records: Iterable[Any]) -> None:
    """One shard of score records as a Parquet table: the local schema's columns, its field
    encoding (jaxnsfw.bulk.records.record_fields: readable path + base64 path_bytes), nulls for
    empty fields."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from jaxnsfw.bulk.records import record_fields

    pq.write_table(pa.Table.from_pylist([record_fields(r) for r in records], schema=_parquet_schema()), path)
    _fsync(path)


def read_score_parquet_records(path: str | os.PathLike) -> list[Any]:
    """The records of a Parquet shard, each checked as a JSONL record is, exact paths."""
    import pyarrow.parquet as pq

    from jaxnsfw.bulk.records import OutputError, record_from_fields

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as err:  # noqa: BLE001 -- pyarrow's errors for a file that is not Parquet
        raise OutputError(f"{os.fsdecode(path)}: not a Parquet table ({err}); this is not a jaxnsfw records file, "
                          f"so it is left untouched") from None
    return [record_from_fields(values, f"{os.fsdecode(path)}, row {number}") for number, values in enumerate(rows, 1)]


def read_score_parquet_shard(path: str) -> set[str]:
    from jaxnsfw.bulk.records import OutputError

    paths: set[str] = set()
    for number, record in enumerate(read_score_parquet_records(path), 1):
        if record.path in paths:
            raise OutputError(f"{path}, row {number}: a second record for {record.path!r}")
        paths.add(record.path)
    return paths


def read_score_shard(path: str) -> set[str]:
    from jaxnsfw.bulk.records import RecordWriter

    with RecordWriter(path, resume=True) as writer:
        return writer.recorded


def crashed_score_record(path: str, message: str) -> Any:
    from jaxnsfw.bulk.records import Record

    return Record(path, error=message)


SHARD_FORMATS = ("jsonl", "parquet")


def score_kind(options, weights: str | None = None, exact: bool = False, batch_size: int = 8,
               shard_format: str = "jsonl") -> RecordKind:
    """Scores, as `jaxnsfw score` writes them (jaxnsfw.bulk.records), in JSON Lines or Parquet shards."""
    from jaxnsfw.distributed.scoring import ScoringActor

    if shard_format not in SHARD_FORMATS:
        raise ValueError(f"unknown shard format {shard_format!r}: expected one of {', '.join(SHARD_FORMATS)}")
    parquet = shard_format == "parquet"
    return RecordKind("scores", ScoringActor,
                      dict(options=options, weights=weights, exact=exact, batch_size=batch_size),
                      write_score_parquet_shard if parquet else write_score_shard,
                      read_score_parquet_shard if parquet else read_score_shard, crashed_score_record,
                      ".parquet" if parquet else ".jsonl")


def write_embedding_shard(path: str, records: Iterable[EmbeddedRecord]) -> None:
    """One shard of embedding records: the Parquet table `jaxnsfw embed --out FILE.parquet` writes."""
    import pyarrow.parquet as pq

    from jaxnsfw.atlas.embedding import embedding_table

    records = list(records)
    pq.write_table(embedding_table([r.record for r in records], [r.embedding for r in records]), path)
    _fsync(path)


def read_embedding_shard(path: str) -> set[str]:
    from jaxnsfw.atlas.embedding import read_embeddings
    from jaxnsfw.atlas.errors import AtlasInputError
    from jaxnsfw.bulk.records import OutputError

    try:
        table = read_embeddings(path)
    except AtlasInputError as err:
        raise OutputError(f"{err}; it is left untouched") from None
    paths = set(table.paths)
    if len(paths) != len(table.records):
        raise OutputError(f"{path}: an input is recorded twice; it is left untouched")
    return paths


def crashed_embedding_record(path: str, message: str) -> EmbeddedRecord:
    return EmbeddedRecord(crashed_score_record(path, message), None)


def embed_kind(options, weights: str | None = None, exact: bool = False, batch_size: int = 8) -> RecordKind:
    """Scores with embeddings, as `jaxnsfw embed` writes them, in Parquet shards."""
    from jaxnsfw.distributed.scoring import EmbeddingActor

    return RecordKind("embeddings", EmbeddingActor,
                      dict(options=options, weights=weights, exact=exact, batch_size=batch_size),
                      write_embedding_shard, read_embedding_shard, crashed_embedding_record, ".parquet")
