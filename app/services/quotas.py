"""Per-organization limits: active jobs, and request rate. Both answer 429 with `Retry-After`
in the OpenAI error envelope, so the SDK's `RateLimitError` (and its retry) applies.

The request rate uses the `limits` library (sliding-window counter) rather than hand-written
counting: its storage is a URL, so one process keeps counts in memory (embedded default) and a
fleet of API processes shares them in Redis (`BUCKLE_RATE_LIMIT_STORAGE_URL=redis://…`).
"""

from __future__ import annotations

import math
import time
from functools import lru_cache

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.errors import APIError
from app.models import JOB_ACTIVE, FineTuningJob, Organization


def check_active_jobs(session: Session, org_id: str) -> None:
    """429 when the organization already has `BUCKLE_MAX_ACTIVE_JOBS` unfinished jobs.

    On PostgreSQL the organization row is locked until the job's transaction commits, so two
    concurrent creates cannot both take the last slot (SQLite serializes writers already)."""
    settings = get_settings()
    cap = settings.max_active_jobs
    if cap <= 0:
        return
    session.execute(select(Organization.id).where(Organization.id == org_id).with_for_update())
    active = session.scalar(select(func.count()).select_from(FineTuningJob).where(
        FineTuningJob.org_id == org_id, FineTuningJob.status.in_(JOB_ACTIVE)))
    if active >= cap:
        raise APIError(
            429, f"Your organization has {active} unfinished fine-tuning jobs, the most allowed "
                 f"at once ({cap}); wait for one to finish or cancel one, then retry.",
            type="rate_limit_error", code="too_many_active_jobs",
            headers={"Retry-After": str(settings.active_jobs_retry_after_s)})


@lru_cache(maxsize=4)
def _limiter(storage_url: str) -> SlidingWindowCounterRateLimiter:
    return SlidingWindowCounterRateLimiter(storage_from_string(storage_url))


@lru_cache(maxsize=8)
def _item(spec: str) -> RateLimitItem:
    return parse(spec)


def rate_limit_is_local() -> bool:
    return get_settings().rate_limit_storage_url.startswith("memory://")


def check_rate(org_id: str) -> None:
    """Count one request of `org_id`; 429 once it is over `BUCKLE_RATE_LIMIT`."""
    settings = get_settings()
    if not settings.rate_limit:
        return
    item = _item(settings.rate_limit)
    limiter = _limiter(settings.rate_limit_storage_url)
    if limiter.hit(item, org_id):
        return
    reset = limiter.get_window_stats(item, org_id).reset_time
    retry = max(1, math.ceil(reset - time.time()))
    raise APIError(429, f"Rate limit reached for your organization ({settings.rate_limit}); "
                        f"retry after {retry} s.", type="rate_limit_error",
                   code="rate_limit_exceeded", headers={"Retry-After": str(retry)})
