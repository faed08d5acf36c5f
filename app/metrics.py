"""Prometheus metrics: request counts/latency per route (a pure ASGI middleware, cheap on the hot
path), and at scrape time, from the registry and the broker (so one scrape of any API process
sees the whole fleet, with no port per worker):
  buckle_jobs{status}                       jobs per status
  buckle_queue_depth{queue}                 messages waiting in the broker, per queue
  buckle_job_duration_seconds{outcome}      created -> finished, finished jobs (histogram)
  buckle_train_tokens_per_second{job}       running jobs: the last reported training speed
  buckle_train_step_seconds{job}            running jobs: seconds per optimizer step, between
                                            the last two stored step events
  buckle_gpu_memory_bytes{job}              running jobs on a GPU: peak memory allocated
  buckle_worker_up{worker,queues}           1 while a worker's heartbeat is fresh (< 3
                                            reconcile intervals), else 0
  buckle_worker_heartbeat_age_seconds{worker}

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
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter("buckle_http_requests_total", "HTTP requests", ["method", "route", "status"],
                   registry=REGISTRY)
LATENCY = Histogram("buckle_http_request_seconds", "HTTP request latency", ["method", "route"],
                    registry=REGISTRY,
                    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))


DURATION_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400, 259200)


class RegistryCollector(Collector):
    """Everything read from the registry at scrape time, in one session."""

    def collect(self) -> Iterator[GaugeMetricFamily | HistogramMetricFamily]:
        from app.core.db import new_session

        try:
            with new_session() as session:
                families = list(_job_families(session)) + list(_worker_families(session))
        except Exception:  # noqa: BLE001 - a scrape must not fail because the DB is down
            families = [GaugeMetricFamily("buckle_jobs", "Fine-tuning jobs by status",
                                          labels=["status"])]
        yield from families


def _job_families(session) -> Iterator[GaugeMetricFamily | HistogramMetricFamily]:
    from sqlalchemy import func, select

    from app.models import JOB_TERMINAL, FineTuningJob, JobEvent

    status = GaugeMetricFamily("buckle_jobs", "Fine-tuning jobs by status", labels=["status"])
    for name, count in session.execute(select(FineTuningJob.status, func.count())
                                       .group_by(FineTuningJob.status)).all():
        status.add_metric([name], count)
    yield status
    durations = HistogramMetricFamily("buckle_job_duration_seconds", "Created to finished, "
                                      "by outcome", labels=["outcome"])
    rows = session.execute(select(FineTuningJob.status, FineTuningJob.created_at,
                                  FineTuningJob.finished_at).where(
        FineTuningJob.status.in_(JOB_TERMINAL), FineTuningJob.finished_at.is_not(None))).all()
    for outcome in JOB_TERMINAL:
        seconds = [(f - c).total_seconds() for s, c, f in rows if s == outcome]
        buckets = [(str(b), sum(x <= b for x in seconds)) for b in DURATION_BUCKETS]
        durations.add_metric([outcome], buckets + [("+Inf", len(seconds))], sum(seconds))
    yield durations
    speed = GaugeMetricFamily("buckle_train_tokens_per_second", "Last reported training "
                              "speed of each running job", labels=["job"])
    step = GaugeMetricFamily("buckle_train_step_seconds", "Seconds per optimizer step of each "
                             "running job (last two stored steps)", labels=["job"])
    memory = GaugeMetricFamily("buckle_gpu_memory_bytes", "Peak GPU memory allocated by each "
                               "running job's worker", labels=["job"])
    running = session.scalars(select(FineTuningJob.id).where(FineTuningJob.status == "running"))
    for job_id in running:
        last = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id,
                                                      JobEvent.type == "metrics")
                               .order_by(JobEvent.seq.desc()).limit(2)).all()
        data = [e.data or {} for e in last]
        if not data or "step" not in data[0]:
            continue
        if data[0].get("tokens_per_s") is not None:
            speed.add_metric([job_id], float(data[0]["tokens_per_s"]))
        if data[0].get("gpu_memory_bytes") is not None:
            memory.add_metric([job_id], float(data[0]["gpu_memory_bytes"]))
        if len(data) == 2 and "step" in data[1] and data[0]["step"] > data[1]["step"] \
                and data[0].get("training_stage") == data[1].get("training_stage"):
            dt = (last[0].created_at - last[1].created_at).total_seconds()
            step.add_metric([job_id], dt / (data[0]["step"] - data[1]["step"]))
    yield from (speed, step, memory)


def _worker_families(session) -> Iterator[GaugeMetricFamily]:
    from sqlalchemy import select

    from app.core.config import get_settings
    from app.models import WorkerHeartbeat, utcnow

    fresh = 3 * get_settings().reconcile_interval_s
    up = GaugeMetricFamily("buckle_worker_up", "1 while the worker's heartbeat is fresh",
                           labels=["worker", "queues"])
    age = GaugeMetricFamily("buckle_worker_heartbeat_age_seconds", "Seconds since the worker's "
                            "last heartbeat", labels=["worker"])
    now = utcnow()
    for w in session.scalars(select(WorkerHeartbeat)):
        seconds = (now - w.last_seen).total_seconds()
        up.add_metric([w.name, w.queues], 1.0 if seconds < fresh else 0.0)
        age.add_metric([w.name], seconds)
    yield from (up, age)


class QueueDepthCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        from app.broker import queue_depths

        family = GaugeMetricFamily("buckle_queue_depth", "Messages waiting in the broker",
                                   labels=["queue"])
        for queue, depth in queue_depths().items():
            if depth is not None:
                family.add_metric([queue], depth)
        yield family


COLLECTORS = (RegistryCollector(), QueueDepthCollector())
for _c in COLLECTORS:
    REGISTRY.register(_c)


def render_metrics() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        for collector in COLLECTORS:
            registry.register(collector)
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
