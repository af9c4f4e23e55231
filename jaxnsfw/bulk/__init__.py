"""Bulk scoring: which files are read (walk), how they are decoded and scored (pipeline), how
their records are written and resumed (records), and the `jaxnsfw score` command (command).

Nothing here imports JAX at module level: the worker processes import this package to decode.
"""

from jaxnsfw.bulk.pipeline import (
    DEFAULT_TIMEOUT_S,
    MAX_BATCH_BYTES,
    FileScorer,
    Prepared,
    WorkerStartError,
    embed_prepared,
    error_text,
    prepare_all,
    prepare_file,
    score_prepared,
)
from jaxnsfw.bulk.records import OutputError, Record, RecordWriter, read_records
from jaxnsfw.bulk.walk import InputItem, WalkCounts, walk_inputs

__all__ = [
    "DEFAULT_TIMEOUT_S", "MAX_BATCH_BYTES", "FileScorer", "InputItem", "OutputError", "Prepared", "Record",
    "RecordWriter", "WalkCounts", "WorkerStartError", "embed_prepared", "error_text", "prepare_all", "prepare_file",
    "read_records", "score_prepared", "walk_inputs",
]
