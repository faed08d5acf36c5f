"""Thin Celery tasks: each takes an id, and the runner re-checks the row before acting."""

from __future__ import annotations

import logging
import os
import sys

from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutdown

from app.core.config import get_settings
from workers import evaluations, gpu_guard, job_runner, recovery, screening
from workers.celery_app import TRAIN_QUEUE, celery_app

log = logging.getLogger("buckle.worker")
_settings = get_settings()


@celery_app.task(name="buckle.validate_job", time_limit=_settings.light_time_limit_s,
                 soft_time_limit=_settings.light_time_limit_s - 5)
def validate_job(job_id: str) -> None:
    job_runner.validate(job_id)


@celery_app.task(name="buckle.screen_file", time_limit=_settings.light_time_limit_s,
                 soft_time_limit=_settings.light_time_limit_s - 5)
def screen_file(file_id: str) -> None:
    screening.screen_file(file_id)


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
    evaluations.run_evaluation(evaluation_id)


def torch_threads(explicit: int | None, env: str | None, cpus: int | None,
                  concurrency: int) -> int:
    """Threads per pool process: BUCKLE_TORCH_THREADS, else OMP_NUM_THREADS, else an equal
    share of the cores. Oversubscribed torch processes are far slower than shared-out ones."""
    if explicit:
        return explicit
    if env and env.strip().isdigit() and int(env) > 0:
        return int(env)
    return max(1, (cpus or 1) // max(1, concurrency))


@worker_init.connect
def _share_cpus(sender: object = None, **_: object) -> None:
    # Before the pool forks: torch reads OMP_NUM_THREADS when a pool process first imports it.
    threads = torch_threads(_settings.torch_threads, os.environ.get("OMP_NUM_THREADS"),
                            os.cpu_count(), getattr(sender, "concurrency", 1) or 1)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # logged once logging is set up (ready)


_gpu_locks: list = []  # held for the life of the worker process


def _consumes_train_queue(sender: object) -> bool:
    queues = _queues_of(sender)
    return queues == "*" or TRAIN_QUEUE in queues.split(",")


@worker_init.connect
def _claim_gpu(sender: object = None, **_: object) -> None:
    """A training worker refuses to start on a GPU another worker holds (workers.gpu_guard)."""
    if not _consumes_train_queue(sender):
        return
    try:
        _gpu_locks.extend(gpu_guard.claim_gpus(gpu_guard.visible_gpus(),
                                               int(getattr(sender, "concurrency", 1) or 1)))
    except gpu_guard.GpuClaimError as exc:
        log.critical("refusing to start: %s", exc)
        print(f"buckle worker: refusing to start: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(3) from None


@worker_process_init.connect
def _fresh_process(**_: object) -> None:
    # A forked pool process must not share the parent's database connections.
    from app.core.db import get_engine

    get_engine().dispose(close=False)
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if "torch" in sys.modules and threads.isdigit():  # imported before the fork: too late for
        sys.modules["torch"].set_num_threads(int(threads))  # the variable, so set it directly


_identity: dict[str, str] = {}


def _queues_of(sender: object) -> str:
    queues = getattr(getattr(getattr(sender, "app", None), "amqp", None), "queues", None)
    consume = getattr(queues, "consume_from", None)
    return ",".join(sorted(consume)) if consume else "*"


@worker_ready.connect
def _start_recovery(sender: object = None, **_: object) -> None:
    log.info("torch threads per worker process: %s", os.environ.get("OMP_NUM_THREADS"))
    if _gpu_locks:  # logged here: logging is set up by the time the worker is ready
        log.info("training on %s (lock held)", ", ".join(h.name for h in _gpu_locks))
    # `sender` is the consumer; its controller knows the node name (-n) and the queues
    controller = getattr(sender, "controller", sender)
    _identity["name"] = str(getattr(controller, "hostname", None) or os.getpid())
    recovery.start_recovery_thread(_identity["name"], _queues_of(controller))


@worker_shutdown.connect
def _stop_recovery(**_: object) -> None:
    recovery.stop_recovery_thread(_identity.get("name"))
