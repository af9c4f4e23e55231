"""The `jaxnsfw serve` command.

    jaxnsfw serve [--host 127.0.0.1] [--port 8080] [--max-batch N] [--max-wait-ms 5]
                  [--decode-workers N] [--state-dir DIR] [--max-queue N] [--max-body-bytes N]
                  [--max-inflight-bytes N]
                  [--max-files N] [--request-timeout S] [--decode-timeout S] [--max-pixels N]
                  [--max-pending-jobs N] [--score-root DIR ...] [--allow-url-fetch HOST ...]
                  [--weights FILE]

Loads the model, compiles every batch shape, starts the decoding workers and the job runner, then
listens (uvicorn). SIGINT/SIGTERM stop it gracefully (requests in flight answered, workers
closed) and it exits 130/143, as the other commands; 2 for a usage error or a missing extra.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

from jaxnsfw import arguments
from jaxnsfw.serve.config import DEFAULT_MAX_BODY_BYTES, default_decode_workers

EXIT_USAGE = 2
# Module names of the `serve` extra's packages (python-multipart is imported as `multipart`).
SERVE_MODULES = ("fastapi", "uvicorn", "multipart", "prometheus_client")
MISSING_EXTRA = "pip install 'jaxnsfw[serve]'"


def missing_modules() -> list[str]:
    return [name for name in SERVE_MODULES if importlib.util.find_spec(name) is None]


def add_serve_command(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "serve", help="an HTTP service: dynamic batching, asynchronous jobs, metrics",
        description="Serve open_nsfw over HTTP: POST /v1/score (one image as the body, or multipart `files`), "
                    "asynchronous jobs (/v1/jobs: explain, atlas, score), /healthz, /readyz, /metrics, "
                    "opennsfw2-compatible /predict/image(s), OpenAPI at /docs.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (8080)")
    parser.add_argument("--max-batch", type=arguments.positive_int, metavar="N",
                        help="views per device batch; batches of 1, 8 and this many are compiled at start "
                             "(default: 8 on a CPU, where larger batches cost more per image; 32 on an accelerator)")
    parser.add_argument("--max-wait-ms", type=arguments.non_negative_float, default=5.0,
                        help="how long a batch waits for more images after its first, while others are still "
                             "being decoded (5)")
    parser.add_argument("--decode-workers", type=arguments.positive_int, default=default_decode_workers(), metavar="N",
                        help=f"decoding processes (one per core but one: {default_decode_workers()})")
    parser.add_argument("--state-dir", default="jaxnsfw-serve-state", metavar="DIR",
                        help="the job database and the jobs' files (./jaxnsfw-serve-state)")
    parser.add_argument("--max-queue", type=arguments.positive_int, default=256, metavar="N",
                        help="images accepted and not yet answered; past it, 503 with Retry-After (256)")
    parser.add_argument("--max-body-bytes", type=arguments.positive_int, default=DEFAULT_MAX_BODY_BYTES, metavar="N",
                        help=f"largest request body; larger: 413 ({DEFAULT_MAX_BODY_BYTES})")
    parser.add_argument("--max-inflight-bytes", type=arguments.positive_int, metavar="N",
                        help="request bodies held in memory at once; past it, 503 with Retry-After "
                             "(default: 8 x --max-body-bytes)")
    parser.add_argument("--max-files", type=arguments.positive_int, default=64, metavar="N",
                        help="images in one multipart request (64)")
    parser.add_argument("--request-timeout", type=arguments.positive_float, default=60.0, metavar="SECONDS",
                        help="a request not answered by then gets 504 (60)")
    parser.add_argument("--decode-timeout", type=arguments.positive_float, default=30.0, metavar="SECONDS",
                        help="one image's decoding; its worker is killed past it (30)")
    parser.add_argument("--max-pixels", type=arguments.positive_int,
                        help="decompression-bomb limit: refuse images with more pixels, 422 (default: Pillow's, "
                             "about 89 million)")
    parser.add_argument("--max-pending-jobs", type=arguments.positive_int, default=100, metavar="N",
                        help="jobs waiting to run; past it, submissions get 503 with Retry-After (100)")
    parser.add_argument("--score-root", action="append", default=[], metavar="DIR",
                        help="a server-side folder `score` jobs may read (repeatable; none: score jobs are off)")
    parser.add_argument("--allow-url-fetch", nargs="+", default=[], metavar="HOST",
                        help="hosts the compatibility routes may fetch images from (default: fetching is off)")
    parser.add_argument("--url-max-bytes", type=arguments.positive_int, default=DEFAULT_MAX_BODY_BYTES, metavar="N",
                        help="largest image fetched by URL")
    parser.add_argument("--url-timeout", type=arguments.positive_float, default=10.0, metavar="SECONDS",
                        help="time limit of one URL fetch (10)")
    parser.add_argument("--weights", help="checkpoint written by `python -m convert` (default: shipped)")
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    parser.set_defaults(run=run_serve)
    return parser


def config_from(args: argparse.Namespace):
    from jaxnsfw.serve.config import ServeConfig

    return ServeConfig(host=args.host, port=args.port, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                       decode_workers=args.decode_workers, state_dir=args.state_dir, max_queue=args.max_queue,
                       max_body_bytes=args.max_body_bytes, max_inflight_bytes=args.max_inflight_bytes,
                       max_files=args.max_files,
                       request_timeout_s=args.request_timeout, decode_timeout_s=args.decode_timeout,
                       max_pixels=args.max_pixels, max_pending_jobs=args.max_pending_jobs,
                       score_roots=tuple(args.score_root),
                       url_hosts=tuple(args.allow_url_fetch), url_max_bytes=args.url_max_bytes,
                       url_timeout_s=args.url_timeout, weights=args.weights)


def run_serve(args: argparse.Namespace) -> int:
    missing = missing_modules()
    if missing:
        print(f"error: `jaxnsfw serve` needs {', '.join(missing)}, which is not installed: {MISSING_EXTRA}",
              file=sys.stderr)
        return EXIT_USAGE
    import uvicorn

    from jaxnsfw.serve.app import create_app

    config = config_from(args)
    for root in config.score_roots:
        if not root.is_dir():
            print(f"error: --score-root {root} is not a folder", file=sys.stderr)
            return EXIT_USAGE
    # uvicorn handles SIGINT/SIGTERM itself (a graceful stop: the lifespan closes the workers).
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level=args.log_level,
                access_log=False, timeout_graceful_shutdown=10)
    return 0
