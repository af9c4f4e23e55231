"""Prometheus metrics of one service instance (its own registry, so that two apps in one process,
as in tests, never share counters)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("jaxnsfw_requests", "HTTP requests answered, by route and status code",
                                ("route", "status"), registry=self.registry)
        self.latency = Histogram("jaxnsfw_request_seconds", "Time from request to answer, by route", ("route",),
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.images = Counter("jaxnsfw_images", "Images answered, by outcome (scored or error)", ("outcome",),
                              registry=self.registry)
        self.batch_views = Histogram("jaxnsfw_batch_views", "Views per device batch", buckets=BATCH_BUCKETS,
                                     registry=self.registry)
        self.batch_seconds = Histogram("jaxnsfw_batch_seconds", "Device time per batch", buckets=LATENCY_BUCKETS,
                                       registry=self.registry)
        self.queue_depth = Gauge("jaxnsfw_queue_depth", "Images accepted and not yet answered",
                                 registry=self.registry)
        self.rejected = Counter("jaxnsfw_rejected", "Requests refused before any work, by reason", ("reason",),
                                registry=self.registry)
        self.jobs = Gauge("jaxnsfw_jobs", "Jobs in the store, by status", ("status",), registry=self.registry)

    def observe_batch(self, views: int, seconds: float) -> None:
        self.batch_views.observe(views)
        self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
