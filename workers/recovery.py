"""Recovery of jobs whose worker died, and each worker's heartbeat.

Every worker runs one background thread that, every BUCKLE_RECONCILE_INTERVAL_S, (1) refreshes
its row in `worker_heartbeats` (the registry's view of which workers are alive: /metrics
reports it) and (2) re-sends jobs whose lease lapsed or whose message may be lost.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import timedelta

from sqlalchemy import delete, or_, select, update

from app.core.config import get_settings
from app.core.db import session_scope
from app.models import FineTuningJob, WorkerHeartbeat, utcnow
from app.services import jobs

log = logging.getLogger("buckle.worker")


def beat(name: str, queues: str) -> None:
    """Upsert this worker's heartbeat row (last_seen = now)."""
    now = utcnow()
    with session_scope() as session:
        row = session.get(WorkerHeartbeat, name)
        if row is None:
            session.add(WorkerHeartbeat(name=name, hostname=socket.gethostname(),
                                        pid=os.getpid(), queues=queues, started_at=now,
                                        last_seen=now))
        else:
            row.last_seen, row.pid, row.queues = now, os.getpid(), queues


def forget(name: str) -> None:
    with session_scope() as session:
        session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.name == name))


def recover_orphans() -> list[str]:
    """Re-send jobs whose lease lapsed (worker died) or whose message may be lost. Several
    workers may run this at once: the conditional UPDATE on `enqueued_at` lets one win."""
    from app import broker

    settings = get_settings()
    now = utcnow()
    lease_cutoff = now - timedelta(seconds=settings.lease_ttl_s)
    queue_cutoff = now - timedelta(seconds=settings.requeue_after_s)
    sent = []
    with session_scope() as session:
        stale = session.execute(select(FineTuningJob.id, FineTuningJob.status).where(or_(
            (FineTuningJob.status == "running") & (FineTuningJob.lease_expires_at < now),
            FineTuningJob.status.in_(("validating_files", "queued"))
            & (FineTuningJob.enqueued_at < queue_cutoff)))).all()
    for job_id, status in stale:
        with session_scope() as session:
            cutoff = lease_cutoff if status == "running" else queue_cutoff
            claimed = session.execute(
                update(FineTuningJob)
                .where(FineTuningJob.id == job_id, FineTuningJob.status == status,
                       or_(FineTuningJob.enqueued_at.is_(None),
                           FineTuningJob.enqueued_at < cutoff))
                .values(enqueued_at=now).execution_options(synchronize_session=False)
            ).rowcount == 1
            if claimed and status == "running":
                jobs.add_event(session, job_id, "The worker running this job stopped "
                               "responding (its lease lapsed); waiting for a worker to resume "
                               "it from its last checkpoint", level="warn")
        if not claimed:
            continue
        if status == "validating_files":
            broker.submit_job(job_id)
        else:
            broker.submit_training(job_id)
        log.warning("job %s (%s) had no live worker; sent again", job_id, status)
        sent.append(job_id)
    return sent


_recovery_stop = threading.Event()


def _recovery_loop(name: str, queues: str) -> None:
    interval = get_settings().reconcile_interval_s
    while True:
        try:
            beat(name, queues)
        except Exception:
            log.exception("heartbeat failed")  # the database is down: try again next round
        try:
            recover_orphans()
        except Exception:
            log.exception("recovery pass failed")
        if _recovery_stop.wait(interval):
            return


def start_recovery_thread(name: str, queues: str) -> None:
    _recovery_stop.clear()
    threading.Thread(target=_recovery_loop, args=(name, queues), daemon=True,
                     name="buckle-recovery").start()


def stop_recovery_thread(name: str | None = None) -> None:
    _recovery_stop.set()
    if name:
        try:
            forget(name)
        except Exception:
            log.exception("could not remove the heartbeat of %s", name)


