"""What the tasks do: validate a job's files, run its pipeline under a lease, record results.

Exactly-once in effect, on an at-least-once queue: a job is run only by the worker holding its
lease (a row-level `UPDATE … WHERE lease free`), which renews it while working. A duplicate
delivery finds the lease held and retries later; a worker that died stops renewing, so after
`lease_ttl_s` any worker's recovery loop re-sends the job and the next worker resumes it from
its work dir (the pipeline's last checkpoint). Progress becomes job events and a percentage;
checkpoints and curated corpora are recorded in the registry as the pipeline reports them.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select, update

import buckle.errors
from app.core.config import BASE_LEARNING_RATE, get_settings
from app.core.db import session_scope
from app.errors import APIError, DBUnavailable
from app.ids import new_id
from app.models import (
    Checkpoint,
    CuratedCorpus,
    File,
    FineTuningJob,
    utcnow,
)
from app.services import data_refs, jobs
from app.services import files as file_service
from app.storage import ArtifactStore, get_store
from buckle.errors import BuckleError, DatasetFormatError
from buckle.pipeline.spec import (
    Hyperparameters,
    JobCancelled,
    JobSpec,
    ProgressEvent,
)
from workers import screening
from workers.db_retry import with_db_retry
from workers.release import release
from workers.result_files import append_step
from workers.workdir import WorkDirMirror, work_dir_of

log = logging.getLogger("buckle.worker")
# Anything the pipeline raises when should_cancel() turned true (curation may raise the base).
CANCELLED = getattr(buckle.errors, "Cancelled", JobCancelled)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _worker_id() -> str:
    # per process: a forked pool child must not reuse its parent's identity
    return f"{socket.gethostname()}:{os.getpid()}:{WORKER_ID.rsplit(':', 1)[1]}"


# Validation (light queue) --------------------------------------------------------------------

def validate(job_id: str) -> None:
    with session_scope() as session:
        job = session.get(FineTuningJob, job_id)
        if job is None or job.status != "validating_files":
            return  # cancelled, or validated by an earlier delivery
        for param in ("training_file", "validation_file"):
            file_id = getattr(job, param)
            if not file_id:
                continue
            row = session.get(File, file_id)
            if row is None or row.org_id != job.org_id:
                jobs.fail(session, job_id, "file_not_found", f"File {file_id} no longer exists",
                          param, expect=("validating_files",))
                return
            store = get_store()
            if not store.exists(row.storage_key):
                log.error("job %s: stored file %s is missing", job_id, row.storage_key)
                jobs.fail(session, job_id, "file_not_found", f"File {file_id}'s stored content "
                          "is missing on the server; upload it again", param,
                          expect=("validating_files",))
                return
            try:
                data = store.read(row.storage_key)
                file_service.validate_content(data, row.filename, "fine-tune")
            except Exception as exc:  # noqa: BLE001 - any unreadable file fails the job
                message = getattr(exc, "message", None) or str(exc)
                jobs.fail(session, job_id, "invalid_training_file", message, param,
                          expect=("validating_files",))
                return
    if not screening.apply_to_job(job_id):
        return  # refused by the screening policy (recorded as the job's error)
    with session_scope() as session:
        if jobs.transition(session, job_id, ("validating_files",), status="queued"):
            jobs.add_event(session, job_id, "Files validated; job queued for a training worker")


# Training (train queue) ----------------------------------------------------------------------

def job_spec(job: FineTuningJob, store: ArtifactStore, session: Any) -> JobSpec:
    """The library's JobSpec: the job's ids resolved to its own organization's stored files
    (an APIError names the field whose reference no longer resolves)."""
    def path_of(file_id: str | None, param: str) -> str | None:
        if not file_id:
            return None
        ref = data_refs.resolve(session, job.org_id, file_id, "training-file", param)
        return str(store.local_file(ref.file.storage_key))

    hp = job.hyperparameters
    return JobSpec(
        model=job.model, training_file=path_of(job.training_file, "training_file"),
        validation_file=path_of(job.validation_file, "validation_file"),
        hyperparameters=Hyperparameters(
            n_epochs=hp["n_epochs"], batch_size=hp["batch_size"],
            learning_rate=hp["learning_rate_multiplier"] * BASE_LEARNING_RATE),
        safety=data_refs.library_safety(session, job.org_id, job.safety, store), seed=job.seed,
        work_dir=str(work_dir_of(job.id)),
        checkpoint_every=get_settings().checkpoint_every)


def _load_pipeline():
    module, _, name = get_settings().pipeline.partition(":")
    return getattr(importlib.import_module(module), name or "run")


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


class JobReporter:
    """The pipeline's progress and should_cancel callbacks, writing to the registry."""

    def __init__(self, job_id: str, org_id: str, model: str, lease: Lease,
                 work_dir: Path, mirror: WorkDirMirror) -> None:
        s = get_settings()
        self.job_id, self.org_id, self.model, self.lease = job_id, org_id, model, lease
        self.work_dir, self.mirror = work_dir, mirror
        self.cancel_poll_s, self.throttle_s = s.cancel_poll_s, s.event_throttle_s
        self._last_check, self._cancelled = 0.0, False
        self._last_train_event = 0.0
        # checkpoints whose row could not be written (database away): written with the next
        # event that gets through, so the checkpoint list stays complete
        self._unrecorded: list[dict[str, Any]] = []

    def should_cancel(self) -> bool:
        if self._cancelled or self.lease.lost.is_set():
            return True
        now = time.monotonic()
        if now - self._last_check >= self.cancel_poll_s:
            self._last_check = now
            try:
                with session_scope() as session:
                    status = session.scalar(select(FineTuningJob.status)
                                            .where(FineTuningJob.id == self.job_id))
            except DBUnavailable:  # keep training; the lease decides who owns the job
                log.warning("job %s: database unavailable; cancellation check skipped",
                            self.job_id)
                return False
            self._cancelled = status != "running"
        return self._cancelled

    def progress(self, event: ProgressEvent) -> None:
        if event.stage == "train" and "step" in event.data:
            append_step(self.work_dir, event.data)  # every step, for the result file
        if event.stage == "checkpoint":
            self.mirror.push()  # another host can resume from here
        now = time.monotonic()
        is_train_step = event.stage == "train" and event.fraction < 1.0
        if is_train_step and now - self._last_train_event < self.throttle_s:
            return
        if event.stage == "train":
            self._last_train_event = now
        log.info("job %s [%s %.0f%%] %s", self.job_id, event.stage, event.fraction * 100,
                 event.message)
        try:
            self._store(event)
        except DBUnavailable:  # an event is dropped, the job goes on (the step log keeps steps)
            log.warning("job %s: database unavailable; event dropped: %s", self.job_id,
                        event.message)
            if event.stage == "checkpoint" and "step" in event.data:
                self._unrecorded.append(dict(event.data))

    def _store(self, event: ProgressEvent) -> None:
        with session_scope() as session:
            owned = (FineTuningJob.lease_owner == self.lease.owner)
            session.execute(update(FineTuningJob)
                            .where(FineTuningJob.id == self.job_id, owned,
                                   FineTuningJob.status == "running")
                            .values(progress=func.max(FineTuningJob.progress,
                                                      event.fraction * 100)
                                    if session.bind.dialect.name == "sqlite"
                                    else func.greatest(FineTuningJob.progress,
                                                       event.fraction * 100))
                            .execution_options(synchronize_session=False))
            data = _event_data(event)
            kind = "metrics" if event.stage == "train" and "step" in event.data else "message"
            memory = _gpu_memory_bytes() if kind == "metrics" else None
            if memory is not None:
                data["gpu_memory_bytes"] = memory
            jobs.add_event(session, self.job_id, event.message, type=kind, data=data)
            for data in [*self._unrecorded, *([event.data] if event.stage == "checkpoint"
                                              and "step" in event.data else [])]:
                self._record_checkpoint(session, data)
            if event.stage == "curate" and event.data.get("config_hash"):
                self._record_corpus(session, event.data)
        self._unrecorded.clear()  # committed

    def _record_checkpoint(self, session: Any, data: dict[str, Any]) -> None:
        step = int(data["step"])
        exists = session.scalar(select(Checkpoint.id).where(Checkpoint.job_id == self.job_id,
                                                            Checkpoint.step == step))
        if exists is None:  # a resumed job re-reports checkpoints it already has
            session.add(Checkpoint(id=new_id("ftckpt"), job_id=self.job_id, org_id=self.org_id,
                                   step=step, path=str(data.get("path", "")),
                                   metrics={"step": step, **(data.get("metrics") or {})},
                                   created_at=utcnow()))

    def _record_corpus(self, session: Any, data: dict[str, Any]) -> None:
        source, digest = str(data.get("source", "")), str(data["config_hash"])
        row = session.scalar(select(CuratedCorpus).where(
            CuratedCorpus.base_model == self.model, CuratedCorpus.source == source,
            CuratedCorpus.config_hash == digest))
        if row is None:
            row = CuratedCorpus(id=new_id("corpus"), base_model=self.model, source=source,
                                config_hash=digest, config=data.get("config"),
                                path=str(data.get("path", "")), items=data.get("items"),
                                uses=0, created_at=utcnow())
            session.add(row)
        row.uses = (row.uses or 0) + 1
        row.last_used_at = utcnow()


def _gpu_memory_bytes() -> int | None:
    """Peak GPU memory this worker process allocated, where a GPU is in use (for /metrics)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return int(torch.cuda.max_memory_allocated())


def _event_data(event: ProgressEvent) -> dict[str, Any]:
    """The pipeline's data under the job-level `stage` and `fraction`. The pipeline's own
    `stage` key (a training stage of the policy: mixed, immunize, restore…) must not shadow the
    job stage, so it is kept as `training_stage`. (Responses pass it through
    `app.services.public.scrub`: customers never read a server path.)"""
    data = dict(event.data)
    if "stage" in data:
        data["training_stage"] = data.pop("stage")
    return {"stage": event.stage, "fraction": event.fraction, **data}


def run(job_id: str) -> str:
    """Run (or resume) a job. Returns done | busy | skip."""
    settings = get_settings()
    owner = _worker_id()
    with session_scope() as session:
        job = session.get(FineTuningJob, job_id)
        if job is None or job.status in jobs.TERMINAL or job.status in ("validating_files",
                                                                           "paused"):
            return "skip"  # a paused job is sent again when it is resumed
    lease = Lease(job_id, owner, settings.lease_ttl_s)
    if not lease.acquire():
        with session_scope() as session:
            status = session.scalar(select(FineTuningJob.status)
                                    .where(FineTuningJob.id == job_id))
        return "skip" if status in jobs.TERMINAL or status == "paused" else "busy"
    try:
        return _run_leased(job_id, lease)
    finally:
        lease.stop()


def _run_leased(job_id: str, lease: Lease) -> str:
    store = get_store()
    with session_scope() as session:
        job = session.get(FineTuningJob, job_id)
        try:
            spec = job_spec(job, store, session)
        except Exception as exc:  # noqa: BLE001 - recorded below; a crash here would loop
            spec_error = exc
        else:
            spec_error = None
        resumed = job.attempts > 1
        jobs.add_event(session, job_id,
                       f"Worker resumed the job from its last checkpoint (attempt {job.attempts})"
                       if resumed else "Fine-tuning job started",
                       data={"worker": lease.owner, "attempt": job.attempts})
        session.expunge(job)
    if isinstance(spec_error, APIError):  # a file it names was deleted, or never was valid
        _fail(job_id, lease, spec_error.code or "invalid_request", spec_error.message,
              spec_error.param)
        return "done"
    if spec_error is not None:
        # Not retried: the same row would fail the same way after every lease expiry.
        log.error("job %s: cannot build its JobSpec: %r", job_id, spec_error)
        _fail(job_id, lease, "internal_error",
              f"The job could not be handed to the pipeline: {type(spec_error).__name__}: "
              f"{spec_error}", None)
        return "done"
    mirror = WorkDirMirror(store, job_id, Path(spec.work_dir))
    try:
        mirror.restore()
    except Exception:  # resuming from this host's own state is still correct
        log.exception("job %s: could not restore its work dir from the store", job_id)
    reporter = JobReporter(job_id, job.org_id, job.model, lease, Path(spec.work_dir), mirror)
    log.info("job %s: %s on %s", job_id, "resuming" if resumed else "starting", lease.owner)
    try:
        result = _load_pipeline()(spec, progress=reporter.progress,
                                  should_cancel=reporter.should_cancel)
    except CANCELLED:
        if _stopped_for_pause(job_id, lease):
            return "done"
        if lease.lost.is_set():
            log.warning("job %s: lease lost; leaving it to its new owner", job_id)
            return "done"
        with session_scope() as session:
            jobs.add_event(session, job_id, "Worker stopped: the job was cancelled")
        return "done"
    except DatasetFormatError as exc:
        _fail(job_id, lease, "invalid_training_file", str(exc), "training_file")
        return "done"
    except BuckleError as exc:
        _fail(job_id, lease, "job_failed", str(exc), None)
        return "done"
    except Exception as exc:
        from celery.exceptions import SoftTimeLimitExceeded

        if isinstance(exc, SoftTimeLimitExceeded):
            _fail(job_id, lease, "time_limit_exceeded", "The job ran past the worker's time limit "
                                                 "(BUCKLE_TRAIN_TIME_LIMIT_S)", None)
            return "done"
        log.exception("job %s crashed", job_id)
        _fail(job_id, lease, "internal_error", f"{type(exc).__name__}: {exc}", None)
        return "done"
    if not with_db_retry(lambda: release(job, result, lease.owner), f"releasing {job_id}"):
        log.warning("job %s finished but was cancelled meanwhile; adapter discarded", job_id)
        return "done"
    try:
        mirror.discard()
    except Exception:  # a leftover mirror costs storage, not correctness
        log.exception("job %s: could not remove its work-dir mirror", job_id)
    return "done"


def _stopped_for_pause(job_id: str, lease: Lease) -> bool:
    """A paused job this worker held: hand its lease back at once (its checkpoint is saved), so
    a resume is picked up without waiting for the lease to lapse."""
    with session_scope() as session:
        released = jobs.transition(session, job_id, ("paused",), owner=lease.owner,
                                   lease_owner=None, lease_expires_at=None)
        if released:
            jobs.add_event(session, job_id, "Worker stopped: the job is paused; its progress "
                                            "is kept for resume")
    return released


def _fail(job_id: str, lease: Lease, code: str, message: str, param: str | None) -> None:
    def write() -> None:
        with session_scope() as session:
            jobs.fail(session, job_id, code, message, param, expect=("running",),
                      owner=lease.owner)
    with_db_retry(write, f"failing {job_id}")
