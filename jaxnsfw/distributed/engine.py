"""Which engine runs a bulk command: this machine's worker pool, or a Ray cluster.

The choice is one enum, and the flags that go with it are added here, so every bulk command
(`jaxnsfw score`, and later `jaxnsfw embed`) offers the same ones. Nothing here imports Ray: the
parser is built without it, and a command asked for `--engine ray` without Ray installed says how
to install it.
"""

from __future__ import annotations

import argparse
import enum

from jaxnsfw import arguments

RAY_INSTALL_HINT = 'pip install "jaxnsfw[ray]"'


class Engine(str, enum.Enum):
    """`local`: decode in worker processes, score in this process. `ray`: decode in Ray tasks,
    score in Ray actors (one per accelerator), records written as shards of a folder."""

    LOCAL = "local"
    RAY = "ray"

    def __str__(self) -> str:
        return self.value


ENGINE_NAMES = tuple(e.value for e in Engine)


class RayMissing(ImportError):
    """`--engine ray` without Ray Data installed."""


def import_ray():
    """The `ray` module with Ray Data; RayMissing saying how to install it otherwise."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra is ray[data]; plain ray lacks its dependencies)
    except ImportError as err:
        raise RayMissing(f"--engine ray needs Ray Data, which is not installed ({err}); "
                         f"{RAY_INSTALL_HINT}") from None
    return ray


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """--engine, --ray-address, --manifest, --shard-format, --block-size on a bulk command's parser."""
    group = parser.add_argument_group("engine", "where the work runs (--engine ray: see README, \"Past one machine\")")
    group.add_argument("--engine", type=Engine, choices=list(Engine), default=Engine.LOCAL,
                       help="local: this machine's worker processes (default); ray: a Ray Data pipeline (a local "
                            "Ray, or the cluster at --ray-address); --out is then a folder of record shards")
    group.add_argument("--ray-address", metavar="ADDR",
                       help="an existing Ray cluster (auto, ray://HOST:10001, HOST:6379); default: start a local "
                            "Ray on this machine")
    group.add_argument("--manifest", metavar="FILE",
                       help="--engine ray: read the inputs from FILE, one path or URI per line (s3://, gs://, "
                            "hdfs://, file://: whatever pyarrow's filesystems open); local paths are walked "
                            "like PATH arguments")
    group.add_argument("--shard-format", choices=("jsonl", "parquet"), default=None,
                       help="--engine ray: record shards as JSON Lines (default) or Parquet, with the same fields")
    group.add_argument("--block-size", type=arguments.positive_int, default=None, metavar="N",
                       help="--engine ray: inputs per decoding task and per record shard (default 64)")


def check_engine_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors (exit 2) of the engine flags, before anything is loaded."""
    if args.engine is Engine.LOCAL:
        for flag, value in (("--ray-address", args.ray_address), ("--manifest", args.manifest),
                            ("--block-size", args.block_size), ("--shard-format", args.shard_format)):
            if value is not None:
                parser.error(f"{flag} needs --engine ray")
        return
    if not args.out:
        parser.error("--engine ray needs --out DIR (a folder: records are written as shards, part-*.jsonl)")
    if args.out.lower().endswith((".jsonl", ".csv", ".json")):
        parser.error(f"--engine ray writes a folder of record shards; --out {args.out} names a file (give a folder)")
    if args.manifest and args.paths:
        parser.error("give inputs either as PATH arguments or with --manifest, not both")

