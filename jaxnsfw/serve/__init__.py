"""`jaxnsfw serve`: open_nsfw as an HTTP service (FastAPI on uvicorn).

    config.py    ServeConfig: every limit and flag, one frozen dataclass
    decoding.py  uploads decoded in the bulk pipeline's worker processes, awaited from the event loop
    batcher.py   concurrent requests coalesced into the classifier's padded device batches
    app.py       the routes (/v1/score, /v1/jobs, /healthz, /readyz, /metrics) and the app's lifespan
    compat.py    opennsfw2-style routes (/predict/image, /predict/images) and the URL fetcher
    metrics.py   Prometheus counters and histograms
    jobs/        asynchronous jobs: the SQLite store and the runner (explain, atlas, score)
    command.py   the `serve` subcommand

Only command.py is imported by `jaxnsfw` itself; the rest needs the `serve` extra.
"""
