"""The driver of a distributed run: Ray Data from input blocks to committed shards.

    input blocks (driver) -> flat_map: read + decode + preprocess (CPU tasks, one per block)
                          -> map_batches: the network (actors; one per GPU, num_gpus=1)
                          -> records back to the driver -> one shard per finished block

A file that kills its decoding process (a decoder crash) makes Ray retry the task; when every try
died, Ray Data drops that block (max_errored_blocks) and the run goes on. The files of blocks that
came back incomplete are then run again one per task, so only the culprit is lost: an input whose
task still dies alone gets an error record. Every input ends with exactly one record (see
shards.py for how kills and --resume keep it so).

The driver walks, cuts blocks and writes shards; it never imports JAX (the actors do), so Ray is
always started before JAX in this process.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from jaxnsfw.bulk.pipeline import DEFAULT_TIMEOUT_S
from jaxnsfw.bulk.walk import InputItem, WalkCounts, walk_inputs
from jaxnsfw.distributed.decode import block_row, decode_block
from jaxnsfw.distributed.engine import import_ray
from jaxnsfw.distributed.inputs import (
    DEFAULT_BLOCK_SIZE,
    InputBlock,
    input_blocks,
    is_uri,
    manifest_entries,
    manifest_inputs,
)
from jaxnsfw.distributed.kinds import RecordKind, embed_kind, score_kind
from jaxnsfw.distributed.shards import ShardFolder
from jaxnsfw.options import ScoringOptions

# Device batch of the Classifier actors: as the local engine's bulk_batch_size(), decided here
# from the cluster's resources, since the driver does not import JAX.
CPU_BATCH_SIZE, ACCELERATOR_BATCH_SIZE = 8, 32


@dataclass(frozen=True)
class RaySettings:
    """How the work is spread over the cluster.

    `address`: an existing cluster (None: connect to RAY_ADDRESS or start a local Ray).
    `block_size`: inputs per decoding task and per shard. `batch_size`: images per actor call
    (None: 32 with GPUs, 8 without). `actors`: Classifier actors (None: one per GPU, else one).
    `decode_cpus` / `actor_cpus`: Ray CPUs reserved per decoding task / per actor. `task_retries`:
    how often Ray retries a decoding task whose process died, in blocks and then alone. `timeout`:
    seconds one file may take to decode before its task process ends itself (None: no limit)."""

    address: str | None = None
    block_size: int = DEFAULT_BLOCK_SIZE
    batch_size: int | None = None
    actors: int | None = None
    decode_cpus: float = 1.0
    actor_cpus: float = 1.0
    task_retries: int = 2
    timeout: float | None = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.block_size < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise ValueError("block_size and batch_size must be at least 1")
        if self.actors is not None and self.actors < 1:
            raise ValueError(f"actors must be at least 1, got {self.actors}")
        if self.task_retries < 0:
            raise ValueError(f"task_retries must be 0 or more, got {self.task_retries}")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"timeout must be more than 0, got {self.timeout}")


@dataclass
class RunReport:
    """What a distributed run did, for its summary."""

    already_recorded: int = 0  # inputs found in the shards of earlier runs (resume)
    records: int = 0  # records this run wrote
    errors: int = 0  # of which errors
    shards: int = 0
    retried_alone: int = 0  # inputs of blocks whose task died, run again one per task
    crashed: int = 0  # inputs whose task died even alone: error records
    counts: WalkCounts = field(default_factory=WalkCounts)
    started_ray: bool = False


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """ConnectionError unless HOST:PORT (or ray://HOST:PORT) accepts a TCP connection: Ray itself
    retries an unreachable address for minutes before it gives up."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or "/" in host:
        return  # "auto", "local", or a form Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise ConnectionError(f"nothing answers at {address} ({err.strerror or err})") from None


def connect(address: str | None = None) -> bool:
    """Ray, started here (True) or joined: an existing local session, RAY_ADDRESS, or `address`."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address:
        check_reachable(address)
    ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
             configure_logging=True)
    return True


def _quiet_ray_data(ray) -> None:
    """Ray Data's own progress bars and per-execution logs off: the run has one progress bar. A
    dropped block's traceback is not printed either: its files are retried alone and, if they
    still fail, recorded with the reason."""
    context = ray.data.DataContext.get_current()
    context.max_errored_blocks = -1
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)


def _gpus(ray) -> int:
    return int(ray.cluster_resources().get("GPU", 0))


def _outside(folder: str) -> Callable[[InputItem], bool]:
    """Whether an input lies outside the output folder (the shards are never scored)."""
    real = os.path.realpath(folder).rstrip(os.sep) + os.sep

    def outside(item: InputItem) -> bool:
        return is_uri(item.path) or not os.path.realpath(item.path).startswith(real)

    return outside


class _Blocks:
    """The driver's bookkeeping: results per block until the block is whole, then its commit."""

    def __init__(self, blocks: list[InputBlock], shards: ShardFolder, report: RunReport,
                 on_record: Callable[[Any, tuple[str, ...]], None]):
        self.blocks = {block.index: block for block in blocks}
        self.results: dict[int, dict[int, Any]] = {block.index: {} for block in blocks}
        self.shards, self.report, self.on_record = shards, report, on_record

    def add(self, block: int, slot: int, record: Any, warnings: tuple[str, ...]) -> None:
        results = self.results.get(block)
        if results is None or slot in results:
            return  # a block already committed, or a result seen twice (a retried task's output)
        results[slot] = record
        self.on_record(record, warnings)
        if len(results) == len(self.blocks[block].items):
            self.shards.commit(block, [results[slot] for slot in sorted(results)])
            self.report.shards += 1
            del self.results[block]

    def missing(self) -> list[InputBlock]:
        """One single-input block for each input not yet back, under its block's number."""
        return [InputBlock(index, (item,), (slot,))
                for index in sorted(self.results)
                for slot, item in zip(self.blocks[index].slots, self.blocks[index].items)
                if slot not in self.results[index]]


def _run_pass(ray, blocks: list[InputBlock], kind: RecordKind, options: ScoringOptions, settings: RaySettings,
              batch_size: int, gpus: int, book: _Blocks) -> None:
    dataset = ray.data.from_items([block_row(block) for block in blocks], override_num_blocks=len(blocks))
    with warnings.catch_warnings():
        # Ray 2.60 deprecates passing remote arguments this way without a replacement for max_retries.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        # Bounded retries: Ray Data retries a task whose process died forever by default, and a file
        # that kills its decoder would then stop the run.
        dataset = dataset.flat_map(decode_block, fn_kwargs={"options": options, "timeout": settings.timeout},
                                   num_cpus=settings.decode_cpus, max_retries=settings.task_retries)
    actors = settings.actors or max(gpus, 1)
    dataset = dataset.map_batches(kind.actor, fn_constructor_kwargs=kind.actor_kwargs, batch_size=batch_size,
                                  batch_format="numpy", concurrency=actors, num_cpus=settings.actor_cpus,
                                  num_gpus=1 if gpus else None)
    for row in dataset.iter_rows():
        record, notes = pickle.loads(row["result"])
        book.add(int(row["block"]), int(row["slot"]), record, notes)


def run_distributed(items: Iterable[InputItem], out: str | os.PathLike, kind_for: Callable[[int], RecordKind],
                    options: ScoringOptions, settings: RaySettings, resume: bool = False,
                    on_record: Callable[[Any, tuple[str, ...]], None] = lambda record, warnings: None,
                    on_start: Callable[[RunReport, int], None] = lambda report, total: None,
                    report: RunReport | None = None) -> RunReport:
    """Any record kind over `items` into the shard folder `out`. `kind_for(batch_size)` builds the
    kind once the cluster's resources are known. Ray must be connected (see `connect`)."""
    ray = import_ray()
    report = report or RunReport()
    gpus = _gpus(ray)
    batch_size = settings.batch_size or (ACCELERATOR_BATCH_SIZE if gpus else CPU_BATCH_SIZE)
    kind = kind_for(batch_size)
    shards = ShardFolder(out, kind, resume)
    try:
        report.already_recorded = len(shards.recorded)
        outside = _outside(os.fspath(out))
        todo = []
        for item in items:
            if item.path in shards.recorded:
                continue
            if outside(item):
                todo.append(item)
            else:
                report.counts.excluded += 1
        blocks = list(input_blocks(todo, settings.block_size))
        on_start(report, len(todo))
        if not blocks:
            return report

        def count(record: Any, warnings: tuple[str, ...]) -> None:
            report.records += 1
            report.errors += record.error is not None
            on_record(record, warnings)

        book = _Blocks(blocks, shards, report, count)
        _quiet_ray_data(ray)
        _run_pass(ray, blocks, kind, options, settings, batch_size, gpus, book)
        alone = book.missing()
        if alone:
            report.retried_alone = len(alone)
            _run_pass(ray, alone, kind, options, settings, batch_size, gpus, book)
        tries = settings.task_retries + 1
        limit = f" or took longer than {settings.timeout:g} s" if settings.timeout is not None else ""
        for block in book.missing():
            (item,) = block.items
            report.crashed += 1
            book.add(block.index, block.slots[0], kind.crashed(
                item.path, f"WorkerCrashed: the decoding task died on this file{limit} ({tries} tries with its "
                           f"block, {tries} alone)"), ())
        return report
    finally:
        shards.close()


def score_with_ray(inputs: Iterable[str | os.PathLike] = (), out: str | os.PathLike = "scores", *,
                   recursive: bool = False, manifest: str | os.PathLike | None = None, resume: bool = False,
                   options: ScoringOptions = ScoringOptions(), settings: RaySettings = RaySettings(),
                   weights: str | None = None, exact: bool = False, shard_format: str = "jsonl",
                   on_record: Callable[[Any, tuple[str, ...]], None] = lambda record, warnings: None,
                   on_start: Callable[[RunReport, int], None] = lambda report, total: None) -> RunReport:
    """Score files, folders and/or a manifest's paths and URIs on Ray; records go to shards of the
    folder `out` (read them back with `read_shards(out)`). Joins the Ray session already started
    in this process, or starts one (and shuts it down at the end).

        from jaxnsfw.distributed import score_with_ray, read_shards
        report = score_with_ray(["photos/"], "scores/", recursive=True)
        records = read_shards("scores/")   # one jaxnsfw.bulk.Record per file, in input order

    `shard_format`: "jsonl" (the local JSON Lines) or "parquet" (the same fields as columns).
    `on_record(record, warnings)` is called in the driver for every record as it comes back."""
    def kind_for(batch_size: int) -> RecordKind:
        return score_kind(options, weights, exact, batch_size, shard_format)

    return _run_with_ray(inputs, out, kind_for, recursive, manifest, resume, options, settings, on_record, on_start)


def embed_with_ray(inputs: Iterable[str | os.PathLike] = (), out: str | os.PathLike = "embeddings", *,
                   recursive: bool = False, manifest: str | os.PathLike | None = None, resume: bool = False,
                   options: ScoringOptions = ScoringOptions(), settings: RaySettings = RaySettings(),
                   weights: str | None = None, exact: bool = False,
                   on_record: Callable[[Any, tuple[str, ...]], None] = lambda record, warnings: None,
                   on_start: Callable[[RunReport, int], None] = lambda report, total: None) -> RunReport:
    """As score_with_ray, each record with its 1024-d embedding (`jaxnsfw embed --engine ray`), in
    Parquet shards of `out` with the columns of `jaxnsfw embed --out FILE.parquet`. Read them back
    with `jaxnsfw.atlas.read_embeddings(out)`, or give the folder to `jaxnsfw atlas`.
    `on_record(record, warnings)` gets a kinds.EmbeddedRecord (`.record`, `.embedding`)."""
    def kind_for(batch_size: int) -> RecordKind:
        return embed_kind(options, weights, exact, batch_size)

    return _run_with_ray(inputs, out, kind_for, recursive, manifest, resume, options, settings, on_record, on_start)


def _run_with_ray(inputs: Iterable[str | os.PathLike], out: str | os.PathLike,
                  kind_for: Callable[[int], RecordKind], recursive: bool, manifest: str | os.PathLike | None,
                  resume: bool, options: ScoringOptions, settings: RaySettings,
                  on_record: Callable[[Any, tuple[str, ...]], None],
                  on_start: Callable[[RunReport, int], None]) -> RunReport:
    report = RunReport()
    report.started_ray = connect(settings.address)
    try:
        if manifest is not None:
            items: Iterable[InputItem] = manifest_inputs(manifest_entries(manifest), recursive, (), report.counts)
        else:
            items = walk_inputs(inputs, recursive, (), report.counts)
        return run_distributed(items, out, kind_for, options, settings, resume, on_record, on_start, report)
    finally:
        if report.started_ray:
            import_ray().shutdown()
