"""Fine-tuning jobs: creation (idempotent), listing, cancellation, events and checkpoints.

The state machine is `validating_files → queued → running → succeeded | failed | cancelled`,
plus `queued | running → paused → queued` (pause stops the worker at its next step, keeping the
checkpoint it saves; resume queues the job again and a worker continues from that checkpoint).
Every transition is a conditional UPDATE on the expected current state, so the API cancelling a
job and a worker finishing it can race without either overwriting the other.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.errors import APIError, bad_request
from app.ids import new_id
from app.models import (
    JOB_ACTIVE,
    JOB_TERMINAL,
    Checkpoint,
    FineTuningJob,
    JobEvent,
    epoch,
    utcnow,
)
from app.schemas import (
    CheckpointPublic,
    EventPublic,
    HyperparametersPublic,
    JobCreate,
    JobPublic,
)
from app.services import data_refs, quotas, screening
from app.services.public import scrub, scrub_text

ACTIVE, TERMINAL = JOB_ACTIVE, JOB_TERMINAL
PAUSABLE = ("queued", "running")


def request_hash(body: JobCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _by_idempotency_key(session: Session, org_id: str, key: str) -> FineTuningJob | None:
    return session.scalar(select(FineTuningJob).where(FineTuningJob.org_id == org_id,
                                                      FineTuningJob.idempotency_key == key))


def _replay(existing: FineTuningJob, digest: str) -> FineTuningJob:
    if existing.request_hash != digest:
        raise APIError(409, "This Idempotency-Key was already used with a different request "
                            f"(job {existing.id}); use a new key for a new job.",
                       code="idempotency_key_reused", param="Idempotency-Key")
    return existing


def create(session: Session, org_id: str, body: JobCreate,
           idempotency_key: str | None) -> tuple[FineTuningJob, bool]:
    """(job, created). A repeated Idempotency-Key with the same body returns the first job."""
    digest = request_hash(body)
    if idempotency_key and (existing := _by_idempotency_key(session, org_id, idempotency_key)):
        return _replay(existing, digest), False
    refs = data_refs.check(session, org_id, body)  # every file, prompt set and model it names
    screening.refuse_at_creation(refs[("training_file",)].file.screening, get_settings())
    quotas.check_active_jobs(session, org_id)
    job = FineTuningJob(
        id=new_id("ftjob"), org_id=org_id, model=body.model, training_file=body.training_file,
        validation_file=body.validation_file, hyperparameters=body.hyperparameters_in().resolved(),
        safety=body.safety.model_dump(mode="json"), suffix=body.suffix,
        seed=body.seed if body.seed is not None else secrets.randbelow(2**31),
        metadata_=body.metadata, status="validating_files", progress=0.0, attempts=0,
        idempotency_key=idempotency_key, request_hash=digest, enqueued_at=utcnow(),
        created_at=utcnow())
    session.add(job)
    session.flush()
    add_event(session, job.id, f"Validating training file: {body.training_file}")
    try:
        session.commit()
    except IntegrityError:
        session.rollback()  # a concurrent request with the same Idempotency-Key won the race
        existing = _by_idempotency_key(session, org_id, idempotency_key) if idempotency_key \
            else None
        if existing is None:
            raise
        return _replay(existing, digest), False
    return job, True


def mark_enqueue_failed(session: Session, job: FineTuningJob, reason: str) -> None:
    fail(session, job.id, "queue_unavailable",
         f"The job could not be queued ({reason}); nothing ran. Try again.", expect=ACTIVE)


def get(session: Session, org_id: str, job_id: str) -> FineTuningJob | None:
    job = session.get(FineTuningJob, job_id)
    return job if job is not None and job.org_id == org_id else None


# Every column labelled with its ORM attribute name (`metadata_`, not `metadata`), so a Row
# reads like a FineTuningJob wherever only attributes are used (to_public).
# Built once: its cache key is memoized, so executing it skips SQL construction and hashing.
_READ_JOB = (select(*[col.label(attr) for attr, col in sa_inspect(FineTuningJob).columns.items()])
             .where(FineTuningJob.id == bindparam("job_id"),
                    FineTuningJob.org_id == bindparam("org_id")))


def read(conn: Connection, org_id: str, job_id: str) -> Row | None:
    """The job as a plain row, for the polling path: one prebuilt Core SELECT, no Session.
    Profiling showed the ORM's Session.get at ~40% of that request's CPU; same data."""
    return conn.execute(_READ_JOB, {"job_id": job_id, "org_id": org_id}).one_or_none()


def list_(session: Session, org_id: str, *, after: str | None, limit: int,
          metadata: dict[str, str]) -> tuple[Sequence[FineTuningJob], bool]:
    q = select(FineTuningJob).where(FineTuningJob.org_id == org_id)
    if after:
        q = q.where(FineTuningJob.id < after)
    for key, value in metadata.items():  # JSON path operators: SQLite and PostgreSQL alike
        q = q.where(FineTuningJob.metadata_[key].as_string() == value)
    q = q.order_by(FineTuningJob.id.desc())
    rows = list(session.scalars(q.limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def transition(session: Session, job_id: str, expect: Sequence[str], *,
               owner: str | None = None, **values: Any) -> bool:
    """Set `values` only if the job is still in one of `expect` (and, given `owner`, still
    leased by that worker); True if it was."""
    q = update(FineTuningJob).where(FineTuningJob.id == job_id, FineTuningJob.status.in_(expect))
    if owner is not None:
        q = q.where(FineTuningJob.lease_owner == owner)
    result = session.execute(q.values(**values).execution_options(synchronize_session=False))
    return result.rowcount == 1


def fail(session: Session, job_id: str, code: str, message: str, param: str | None = None,
         expect: Sequence[str] = ACTIVE, owner: str | None = None) -> bool:
    ok = transition(session, job_id, expect, owner=owner, status="failed", finished_at=utcnow(),
                    error={"code": code, "message": message, "param": param},
                    lease_owner=None, lease_expires_at=None)
    if ok:
        add_event(session, job_id, f"Fine-tuning job failed: {message}", level="error")
    session.commit()
    return ok


def cancel(session: Session, job: FineTuningJob) -> FineTuningJob:
    if job.status == "cancelled":
        return job
    if job.status in TERMINAL:
        raise bad_request(f"Job {job.id} has already {job.status}; only unfinished jobs can be "
                          "cancelled", code="job_not_cancellable")
    # Cancelled at once, like OpenAI; a worker running it sees the state at its next
    # should_cancel() poll, stops between steps and never overwrites the state.
    if transition(session, job.id, ACTIVE, status="cancelled", finished_at=utcnow()):
        add_event(session, job.id, "Fine-tuning job cancelled by the user")
    session.commit()
    session.refresh(job)
    return job


def pause(session: Session, job: FineTuningJob) -> FineTuningJob:
    """Stop a queued or running job, keeping its work; a paused job holds its quota slot."""
    if job.status == "paused":
        return job
    if job.status not in PAUSABLE:
        raise bad_request(f"Job {job.id} is {job.status}; only queued or running jobs can be "
                          "paused", code="job_not_pausable")
    if transition(session, job.id, PAUSABLE, status="paused"):
        add_event(session, job.id, "Fine-tuning job paused by the user; resume continues from "
                                   "its last checkpoint")
    session.commit()
    session.refresh(job)
    return job


def resume(session: Session, job: FineTuningJob) -> bool:
    """Queue a paused job again; True if this call did (the caller then sends it to a worker)."""
    if job.status in PAUSABLE:
        return False  # already resumed
    if job.status != "paused":
        raise bad_request(f"Job {job.id} is {job.status}; only paused jobs can be resumed",
                          code="job_not_resumable")
    resumed = transition(session, job.id, ("paused",), status="queued", enqueued_at=utcnow())
    if resumed:
        add_event(session, job.id, "Fine-tuning job resumed by the user")
    session.commit()
    session.refresh(job)
    return resumed


def add_event(session: Session, job_id: str, message: str, *, level: str = "info",
              type: str = "message", data: dict[str, Any] | None = None) -> JobEvent:
    event = JobEvent(id=new_id("ftevent"), job_id=job_id, level=level, type=type,
                     message=message, data=data, created_at=utcnow())
    session.add(event)
    return event


def list_events(session: Session, job_id: str, *, after: str | None,
                limit: int) -> tuple[list[JobEvent], bool]:
    """Newest first, like OpenAI; `after` = the last event id of the previous page."""
    q = select(JobEvent).where(JobEvent.job_id == job_id)
    if after:
        seq = session.scalar(select(JobEvent.seq).where(JobEvent.id == after,
                                                        JobEvent.job_id == job_id))
        if seq is None:
            raise bad_request(f"No such event in this job: {after!r}", param="after")
        q = q.where(JobEvent.seq < seq)
    rows = list(session.scalars(q.order_by(JobEvent.seq.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def events_since(session: Session, job_id: str, seq: int) -> list[JobEvent]:
    """Oldest first after `seq`: what the live stream sends next."""
    return list(session.scalars(select(JobEvent).where(JobEvent.job_id == job_id,
                                                       JobEvent.seq > seq)
                                .order_by(JobEvent.seq).limit(500)))


def seq_of(session: Session, job_id: str, event_id: str) -> int:
    return session.scalar(select(JobEvent.seq).where(JobEvent.id == event_id,
                                                     JobEvent.job_id == job_id)) or 0


def list_checkpoints(session: Session, job_id: str, *, after: str | None,
                     limit: int) -> tuple[list[Checkpoint], bool]:
    q = select(Checkpoint).where(Checkpoint.job_id == job_id)
    if after:
        step = session.scalar(select(Checkpoint.step).where(Checkpoint.id == after,
                                                            Checkpoint.job_id == job_id))
        if step is None:
            raise bad_request(f"No such checkpoint in this job: {after!r}", param="after")
        q = q.where(Checkpoint.step < step)
    rows = list(session.scalars(q.order_by(Checkpoint.step.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


# Public shapes -------------------------------------------------------------------------------

def to_public(job: FineTuningJob | Row) -> JobPublic:
    hp = HyperparametersPublic(**job.hyperparameters)
    return JobPublic(
        id=job.id, created_at=epoch(job.created_at), error=scrub(job.error),
        fine_tuned_model=job.fine_tuned_model, finished_at=epoch(job.finished_at),
        hyperparameters=hp, model=job.model, organization_id=job.org_id,
        method={"type": "supervised", "supervised": {"hyperparameters": hp.model_dump()}},
        result_files=list(job.result_files or []), seed=job.seed, status=job.status,
        trained_tokens=job.trained_tokens, estimated_finish=estimated_finish(job),
        training_file=job.training_file, validation_file=job.validation_file,
        metadata=job.metadata_, user_provided_suffix=job.suffix, safety=scrub(job.safety),
        safety_scores=scrub(job.safety_scores), screening=job.screening, progress=round(job.progress or 0.0, 1))


def event_public(event: JobEvent) -> EventPublic:
    return EventPublic(id=event.id, created_at=epoch(event.created_at), level=event.level,
                       message=scrub_text(event.message), type=event.type,
                       data=scrub(event.data))


def checkpoint_public(ckpt: Checkpoint) -> CheckpointPublic:
    return CheckpointPublic(id=ckpt.id, created_at=epoch(ckpt.created_at),
                            fine_tuned_model_checkpoint=f"{ckpt.job_id}:ckpt-step-{ckpt.step}",
                            fine_tuning_job_id=ckpt.job_id, metrics=scrub(ckpt.metrics or {}),
                            step_number=ckpt.step)


def estimated_finish(job: FineTuningJob | Row, now: datetime | None = None) -> int | None:
    """Unix time the running job should finish: elapsed time since it started, extrapolated by
    its progress (which counts curation, training and evaluation, not training alone)."""
    progress = job.progress or 0.0
    if job.status != "running" or job.started_at is None or not 1.0 <= progress < 100.0:
        return None
    started = epoch(job.started_at)
    elapsed = epoch(now or utcnow()) - started
    return int(started + elapsed * 100.0 / progress)


def is_terminal(status: str) -> bool:
    return status in TERMINAL


def now() -> datetime:
    return utcnow()
