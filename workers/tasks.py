"""Thin Celery tasks: each takes an id, and the runner re-checks the row before acting."""

from __future__ import annotations

import logging

from celery.signals import worker_process_init, worker_ready, worker_shutdown

from app.core.config import get_settings
from workers import job_runner
from workers.celery_app import celery_app

log = logging.getLogger("buckle.worker")
_settings = get_settings()


@celery_app.task(name="buckle.validate_job", time_limit=_settings.light_time_limit_s,
                 soft_time_limit=_settings.light_time_limit_s - 5)
def validate_job(job_id: str) -> None:
    job_runner.validate(job_id)


@celery_app.task(name="buckle.run_job", bind=True, max_retries=None,
                 time_limit=_settings.train_time_limit_s,
                 soft_time_limit=_settings.train_time_limit_s - 60)
def run_job(self, job_id: str) -> None:
    if job_runner.run(job_id) == "busy":
        # Another live worker holds the job's lease (a redelivered duplicate): look again later;
        # by then the job has finished (nothing to do) or its worker died (resume it).
        raise self.retry(countdown=_settings.lease_ttl_s)


@celery_app.task(name="buckle.run_evaluation", time_limit=_settings.train_time_limit_s,
                 soft_time_limit=_settings.train_time_limit_s - 60)
def run_evaluation(evaluation_id: str) -> None:
    job_runner.run_evaluation(evaluation_id)


@worker_process_init.connect
def _fresh_connections(**_: object) -> None:
    # A forked pool process must not share the parent's database connections.
    from app.core.db import get_engine

    get_engine().dispose(close=False)


@worker_ready.connect
def _start_recovery(**_: object) -> None:
    job_runner.start_recovery_thread()


@worker_shutdown.connect
def _stop_recovery(**_: object) -> None:
    job_runner.stop_recovery_thread()
