"""Prometheus metrics: request counts/latency per route (a pure ASGI middleware, cheap on the hot
path) and job counts per status, read from the registry at scrape time.

With several uvicorn workers set PROMETHEUS_MULTIPROC_DIR to a shared empty directory so the
request metrics of all worker processes are aggregated (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter("buckle_http_requests_total", "HTTP requests", ["method", "route", "status"],
                   registry=REGISTRY)
LATENCY = Histogram("buckle_http_request_seconds", "HTTP request latency", ["method", "route"],
                    registry=REGISTRY,
                    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))


class JobStatusCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        from sqlalchemy import func, select

        from app.core.db import new_session
        from app.models import FineTuningJob

        family = GaugeMetricFamily("buckle_jobs", "Fine-tuning jobs by status", labels=["status"])
        try:
            with new_session() as session:
                rows = session.execute(select(FineTuningJob.status, func.count())
                                       .group_by(FineTuningJob.status)).all()
        except Exception:  # noqa: BLE001 - a scrape must not fail because the DB is down
            rows = []
        for status, count in rows:
            family.add_metric([status], count)
        yield family


REGISTRY.register(JobStatusCollector())


def render_metrics() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(JobStatusCollector())
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            REQUESTS.labels(scope["method"], path, str(status["code"])).inc()
            LATENCY.labels(scope["method"], path).observe(time.perf_counter() - start)
