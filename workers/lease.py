"""A worker's claim on a job: a row-level `UPDATE … WHERE lease free`, renewed in the background.

Why a lease and not Celery's acks: the queue delivers at least once, so two workers can hold the
same message; only the lease holder runs the job, and a worker that dies stops renewing, so after
`lease_ttl_s` another worker may take the job over and resume it from its last checkpoint.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import func, or_, update

from app.core.db import session_scope
from app.models import FineTuningJob, utcnow

log = logging.getLogger("buckle.worker")


class Lease:
    """This worker's claim on a job, renewed in the background until released or lost."""

    def __init__(self, job_id: str, owner: str, ttl: float) -> None:
        self.job_id, self.owner, self.ttl = job_id, owner, ttl
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True,
                                        name=f"lease-{job_id}")

    def acquire(self) -> bool:
        now = utcnow()
        with session_scope() as session:
            result = session.execute(
                update(FineTuningJob)
                .where(FineTuningJob.id == self.job_id,
                       FineTuningJob.status.in_(("queued", "running")),
                       or_(FineTuningJob.lease_owner.is_(None),
                           FineTuningJob.lease_expires_at < now,
                           FineTuningJob.lease_owner == self.owner))
                .values(status="running", lease_owner=self.owner,
                        lease_expires_at=now + timedelta(seconds=self.ttl),
                        attempts=FineTuningJob.attempts + 1,
                        started_at=func.coalesce(FineTuningJob.started_at, now))
                .execution_options(synchronize_session=False))
            if result.rowcount != 1:
                return False
        self._thread.start()
        return True

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                with session_scope() as session:
                    result = session.execute(
                        update(FineTuningJob)
                        .where(FineTuningJob.id == self.job_id,
                               FineTuningJob.lease_owner == self.owner,
                               FineTuningJob.status == "running")
                        .values(lease_expires_at=utcnow() + timedelta(seconds=self.ttl))
                        .execution_options(synchronize_session=False))
                if result.rowcount != 1:
                    self.lost.set()  # cancelled, or presumed dead and taken over
                    return
            except Exception:
                log.exception("lease renewal failed for %s", self.job_id)

    def stop(self) -> None:
        self._stop.set()
