"""`jaxnsfw score --engine ray` and `jaxnsfw embed --engine ray`: the commands' records, made on a
Ray cluster.

    jaxnsfw score PATH ... --engine ray --out DIR [--ray-address ADDR] [--manifest FILE] [--resume]
                  [--block-size N] [--shard-format jsonl|parquet] [the score command's other options]
    jaxnsfw embed PATH ... --engine ray --out DIR [the same engine options; Parquet shards only]

Records go to DIR as shards (part-RRR-BBBBBB.jsonl, the local JSON Lines schema, or .parquet); the
summary, progress bar and exit codes are the local engine's. Ray is started (or joined) first, before
anything could import JAX in this process.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

from jaxnsfw import arguments, interrupts
from jaxnsfw.distributed.engine import RayMissing, import_ray
from jaxnsfw.options import ScoringOptions


def _error(message: str) -> int:
    from jaxnsfw.bulk.command import EXIT_USAGE

    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def score_on_ray(args: argparse.Namespace, options: ScoringOptions) -> int:
    from jaxnsfw.bulk.command import Summary, sample_image_path
    from jaxnsfw.distributed.pipeline import score_with_ray

    if not args.paths and not args.manifest:
        args.paths = [str(sample_image_path())]
        print(f"no PATH given: scoring the bundled sample image {args.paths[0]}", file=sys.stderr)

    def run(settings, on_record, on_start):
        return score_with_ray(args.paths, args.out, recursive=args.recursive, manifest=args.manifest,
                              resume=args.resume, options=options, settings=settings, weights=args.weights,
                              exact=args.exact, shard_format=args.shard_format or "jsonl",
                              on_record=on_record, on_start=on_start)

    return _run_on_ray(args, Summary(*args.thresholds), run, lambda record: record)


def embed_on_ray(args: argparse.Namespace, options: ScoringOptions) -> int:
    from jaxnsfw.bulk.command import Summary
    from jaxnsfw.distributed.pipeline import embed_with_ray

    def run(settings, on_record, on_start):
        return embed_with_ray(args.paths, args.out, recursive=args.recursive, manifest=args.manifest,
                              resume=args.resume, options=options, settings=settings, weights=args.weights,
                              on_record=on_record, on_start=on_start)

    return _run_on_ray(args, Summary(0.2, 0.8), run, lambda embedded: embedded.record)


def _run_on_ray(args: argparse.Namespace, summary, run: Callable, score_record: Callable) -> int:
    """Ray first, then the run with the local engine's progress bar, summary and exit codes.
    `run(settings, on_record, on_start)` starts the pipeline; `score_record` gives the score
    record inside what a kind's actor returns."""
    from jaxnsfw.bulk.command import EXIT_INPUT_ERRORS, EXIT_OK
    from jaxnsfw.bulk.records import OutputError
    from jaxnsfw.distributed.inputs import ManifestError
    from jaxnsfw.distributed.pipeline import RaySettings, connect

    try:
        ray = import_ray()
    except RayMissing as err:
        return _error(str(err))
    settings = RaySettings(address=args.ray_address, block_size=args.block_size or RaySettings.block_size,
                           batch_size=args.batch_size, timeout=args.timeout)
    started = time.perf_counter()
    started_ray = False
    show = arguments.show_progress(args)
    from tqdm import tqdm

    progress = tqdm(total=None, unit="img", disable=True)  # replaced once the number of inputs is known
    try:
        with interrupts.interruptible():
            try:
                started_ray = connect(settings.address)  # first: nothing has imported JAX yet
            except (ConnectionError, ValueError, RuntimeError) as err:
                return _error(f"cannot start or reach Ray{' at ' + settings.address if settings.address else ''}: "
                              f"{err}")
            from jaxnsfw.bulk.command import _check_pillow_once

            _check_pillow_once()

            def on_start(report, total: int) -> None:
                nonlocal progress
                if args.resume:
                    print(f"resuming: {report.already_recorded} inputs already recorded in {args.out}",
                          file=sys.stderr)
                progress = tqdm(total=total, unit="img", disable=not show, file=sys.stderr, smoothing=0.1)

            def on_record(result, warnings) -> None:
                record = score_record(result)
                for message in warnings:
                    progress.write(f"warning: {record.path}: {message}", file=sys.stderr)
                summary.add(record)
                progress.update()
                progress.set_postfix_str(f">{summary.high}: {summary.above}, errors: {summary.errors}", refresh=False)
                interrupts.check()

            report = run(settings, on_record, on_start)
    except (OutputError, ManifestError) as err:
        return _error(str(err))
    except ray.exceptions.RayError as err:
        # Ray's message ends with the remote exception ("CheckpointError: ...", say); the rest is its trace.
        lines = [line for line in str(err).splitlines() if line.strip()]
        print(f"error: the Ray pipeline failed: {lines[-1].strip() if lines else type(err).__name__}", file=sys.stderr)
        return 1
    except interrupts.Interrupted as stop:
        progress.close()
        if started_ray:
            ray.shutdown()
        interrupts.exit_now(stop.exit_code, f"\n{stop}; every finished block's shard was written "
                                            f"({summary.line()}); --resume finishes the run")
    finally:
        progress.close()
        if started_ray and ray.is_initialized():
            ray.shutdown()
    elapsed = time.perf_counter() - started
    rate = summary.total / elapsed if elapsed > 0 else 0.0
    notes = [note for note in (report.counts.line(),
                               f"{report.retried_alone} retried one per task after their task died"
                               if report.retried_alone else "",
                               f"{report.crashed} killed their task even alone" if report.crashed else "") if note]
    print(f"{summary.line()}{'; ' + '; '.join(notes) if notes else ''}; {report.shards} shards in {args.out}; "
          f"{elapsed:.1f} s, {rate:.1f} inputs/s", file=sys.stderr)
    return EXIT_INPUT_ERRORS if summary.errors else EXIT_OK
