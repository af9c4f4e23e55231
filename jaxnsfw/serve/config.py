"""The service's configuration: what `jaxnsfw serve`'s flags set, as one frozen dataclass."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MAX_BODY_BYTES = 32 << 20


def default_decode_workers() -> int:
    # One core is left to the event loop and the device thread.
    return max(1, (os.cpu_count() or 1) - 1)


@dataclass(frozen=True)
class ServeConfig:
    """`max_batch`: views per device batch (the classifier compiles 1, 8 and this many); None: as
    `jaxnsfw score`, 8 on a CPU (where a larger batch costs more per image) and 32 on an accelerator.
    `max_wait_ms`: how long the first image of a batch waits for others to join it.
    `max_queue`: images accepted and not yet answered (decoding or waiting for the device); past it,
    503 with Retry-After. `max_body_bytes`: a larger request body is refused with 413.
    `max_inflight_bytes`: request bodies held at once (default 8 x max_body_bytes); past it, 503.
    `request_timeout_s`: a request that takes longer is answered 504 (its images are dropped).
    `decode_timeout_s`: one image's decoding; its worker is killed past it.
    `max_pixels`: Pillow's decompression-bomb limit (None: Pillow's default, about 89 million).
    `state_dir`: the job database and the jobs' files. `max_pending_jobs`: jobs waiting to run;
    past it, submissions are 503 with Retry-After (uploads must not fill the disk faster than jobs
    run). `score_roots`: server-side folders a `score` job may read (none: the job kind is off).
    `url_hosts`: hosts the compatibility routes may fetch images from (none: fetching is off)."""

    host: str = "127.0.0.1"
    port: int = 8080
    max_batch: int | None = None
    max_wait_ms: float = 5.0
    decode_workers: int = field(default_factory=default_decode_workers)
    state_dir: Path = Path("jaxnsfw-serve-state")
    max_queue: int = 256
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_files: int = 64
    max_inflight_bytes: int | None = None
    request_timeout_s: float = 60.0
    decode_timeout_s: float = 30.0
    max_pixels: int | None = None
    max_pending_jobs: int = 100
    score_roots: tuple[Path, ...] = ()
    url_hosts: tuple[str, ...] = ()
    url_max_bytes: int = DEFAULT_MAX_BODY_BYTES
    url_timeout_s: float = 10.0
    weights: str | None = None
    cpu_devices_per_core: bool = True  # as `jaxnsfw score`: one XLA CPU device per core (README, "Speed")

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_queue", "max_body_bytes", "max_files", "url_max_bytes", "max_pending_jobs"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be 0 or more, got {self.max_wait_ms}")
        if self.decode_workers < 1:
            raise ValueError(f"decode_workers must be at least 1, got {self.decode_workers}")
        if self.max_inflight_bytes is None:
            object.__setattr__(self, "max_inflight_bytes", 8 * self.max_body_bytes)
        elif self.max_inflight_bytes < self.max_body_bytes:
            raise ValueError("max_inflight_bytes must be at least max_body_bytes")
        object.__setattr__(self, "state_dir", Path(self.state_dir))
        object.__setattr__(self, "score_roots", tuple(Path(root).resolve() for root in self.score_roots))
        object.__setattr__(self, "url_hosts", tuple(host.lower() for host in self.url_hosts))
