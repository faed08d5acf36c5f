"""The Celery app and all of its configuration, in one place; the API reaches the broker only
through this module, and `workers/` builds its worker app from it (data flows app -> workers,
never back).

- Queues by resource class: `train` (GPU/CPU-heavy: training, evaluations) and `default` (light:
  file validation, screening). Production runs GPU workers with `-Q train` and light ones with
  `-Q default`.
- `acks_late` + `reject_on_worker_lost` + prefetch 1: a task is acknowledged only once it has
  finished, so a worker that dies mid-job does not lose it. That makes every task idempotent
  and resumable by design: the train task re-checks the job row, takes a lease on it, and the
  pipeline resumes from the job's work dir (its last checkpoint).
- Redis redelivers an unacknowledged task after `visibility_timeout`; training runs for hours,
  so it is raised far above the longest job. A dead worker is noticed much sooner by its lapsed
  job lease (see workers.recovery.recover_orphans), which works on every broker.
- No result backend: results live in the registry; chains do not need one.
- Tasks are sent by name: the API never imports the worker code (or torch).
"""

from __future__ import annotations

import logging

from celery import Celery, chain, signature
from kombu import Queue

from app.core.config import Settings, get_settings

TRAIN_QUEUE, DEFAULT_QUEUE = "train", "default"
log = logging.getLogger("buckle.api")


def _transport_options(settings: Settings) -> dict:
    options: dict = {"visibility_timeout": settings.visibility_timeout_s}
    if settings.resolved_broker_url.startswith("filesystem"):
        folder = settings.broker_dir
        folder.mkdir(parents=True, exist_ok=True)
        options.update(data_folder_in=str(folder), data_folder_out=str(folder),
                       polling_interval=0.1)
    return options


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("buckle", broker=settings.resolved_broker_url, include=["workers.tasks"])
    app.conf.update(
        task_queues=(Queue(DEFAULT_QUEUE), Queue(TRAIN_QUEUE)),
        task_default_queue=DEFAULT_QUEUE,
        task_routes={"buckle.run_job": {"queue": TRAIN_QUEUE},
                     "buckle.run_evaluation": {"queue": TRAIN_QUEUE},
                     "buckle.validate_job": {"queue": DEFAULT_QUEUE}},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options=_transport_options(settings),
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


_senders: dict[tuple[str, str], Celery] = {}


def sender() -> Celery:
    """The app to send tasks with under the *current* settings (tests switch stacks in one
    process); workers are started with `-A workers.celery_app:celery_app`."""
    settings = get_settings()
    key = (settings.resolved_broker_url, str(settings.broker_dir))
    if key not in _senders:
        _senders[key] = make_celery(settings)
    return _senders[key]


def submit_job(job_id: str) -> None:
    """validate (light, `default` queue) then train (`train` queue), as one chain. Called only
    after the row's transaction has committed, so a worker never receives an id it cannot read
    yet."""
    celery_app = sender()
    chain(signature("buckle.validate_job", args=(job_id,), immutable=True, queue=DEFAULT_QUEUE,
                    app=celery_app),
          signature("buckle.run_job", args=(job_id,), immutable=True, queue=TRAIN_QUEUE,
                    app=celery_app)).apply_async()


def submit_training(job_id: str) -> None:
    """An already validated job (a resumed one) goes straight to the `train` queue."""
    sender().send_task("buckle.run_job", args=(job_id,), queue=TRAIN_QUEUE)


def submit_screening(file_id: str) -> None:
    """Screen an uploaded training file with the harm judge (light, `default` queue)."""
    sender().send_task("buckle.screen_file", args=(file_id,), queue=DEFAULT_QUEUE)


def submit_evaluation(evaluation_id: str) -> None:
    sender().send_task("buckle.run_evaluation", args=(evaluation_id,), queue=TRAIN_QUEUE)


def check_broker() -> str | None:
    """None when the broker answers, else the error (readiness)."""
    try:
        with sender().connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # noqa: BLE001 - readiness reports any failure
        return f"{type(exc).__name__}: {exc}"
    return None


def queue_depths() -> dict[str, int | None]:
    """Messages waiting per queue (None: the broker did not answer). A queue nobody declared
    yet holds nothing."""
    out: dict[str, int | None] = {TRAIN_QUEUE: None, DEFAULT_QUEUE: None}
    try:
        with sender().connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            channel = conn.default_channel
            for queue in out:
                try:
                    out[queue] = int(channel.queue_declare(queue=queue, passive=True)
                                     .message_count)
                except Exception:  # noqa: BLE001 - not declared yet (kombu: NOT_FOUND)
                    out[queue] = 0
                    channel = conn.channel()  # a failed passive declare may close the channel
    except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the broker is down
        log.warning("queue depth: broker unavailable (%s)", type(exc).__name__)
    return out
