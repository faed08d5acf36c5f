"""Ride out a registry outage (PostgreSQL restarting, a failover) instead of failing the job.

A worker's writes fall in two kinds: progress (events, the progress bar) which may be dropped
while the database is away — the per-step log in the work dir keeps the numbers — and the
writes a job's outcome depends on (release, failure), which are retried with backoff until the
database is back or `BUCKLE_DB_RETRY_S` runs out. Every such write is conditional on the job's
state and lease, so a retry after an unknown outcome cannot apply twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from app.core.config import get_settings
from app.errors import DBUnavailable

log = logging.getLogger("buckle.worker")
T = TypeVar("T")


def with_db_retry(fn: Callable[[], T], what: str) -> T:
    """`fn()`, retried while the database is unreachable (1, 2, 4 … 15 s apart)."""
    deadline = time.monotonic() + get_settings().db_retry_s
    delay = 1.0
    while True:
        try:
            return fn()
        except DBUnavailable as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s: database unavailable (%s); retrying in %.0f s", what,
                        type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(15.0, delay * 2)
