"""What the tasks do: validate a job's files, run its pipeline under a lease, record results.

Exactly-once in effect, on an at-least-once queue: a job is run only by the worker holding its
lease (a row-level `UPDATE … WHERE lease free`), which renews it while working. A duplicate
delivery finds the lease held and retries later; a worker that died stops renewing, so after
`lease_ttl_s` any worker's recovery loop re-sends the job and the next worker resumes it from
its work dir (the pipeline's last checkpoint) (`workers.lease`). Progress, checkpoints and
curated corpora reach the registry through `workers.reporter`.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select

import buckle.errors
from app.core.config import BASE_LEARNING_RATE, get_settings
from app.core.db import session_scope
from app.errors import APIError
from app.models import File, FineTuningJob
from app.services import data_refs, jobs
from app.services import files as file_service
from app.storage import ArtifactStore, get_store
from buckle.errors import BuckleError, DatasetFormatError
from buckle.pipeline.spec import Hyperparameters, JobCancelled, JobSpec
from workers import screening
from workers.db_retry import with_db_retry
from workers.lease import Lease
from workers.release import release
from workers.reporter import JobReporter
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
