"""The registry: SQLAlchemy 2 typed models. Tables are created by Alembic migrations only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def epoch(value: datetime | None) -> int | None:
    """Unix seconds; SQLite hands back naive datetimes, which are UTC here."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


Timestamp = DateTime(timezone=True)
def org_fk() -> ForeignKey:
    return ForeignKey("organizations.id", ondelete="CASCADE")


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(org_fk(), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16))  # shown to admins; the key itself is not kept
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)


class File(Base):
    __tablename__ = "files"
    __table_args__ = (Index("ix_files_org_id_id", "org_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(org_fk())
    filename: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    records: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(500))
    # training-data screening summary (buckle.evaluation.screening), written by a light worker
    screening: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


# A job's states, in one place: unfinished jobs hold a quota slot and pin the files they name.
JOB_ACTIVE = ("validating_files", "queued", "running", "paused")
JOB_TERMINAL = ("succeeded", "failed", "cancelled")


class FineTuningJob(Base):
    __tablename__ = "fine_tuning_jobs"
    __table_args__ = (
        UniqueConstraint("org_id", "idempotency_key", name="uq_fine_tuning_jobs_idempotency"),
        Index("ix_fine_tuning_jobs_org_id_id", "org_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(org_fk())
    model: Mapped[str] = mapped_column(String(300))
    training_file: Mapped[str] = mapped_column(String(40))
    validation_file: Mapped[str | None] = mapped_column(String(40))
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)  # as the API reports them
    safety: Mapped[dict[str, Any]] = mapped_column(JSON)  # resolved SafetySpec
    suffix: Mapped[str | None] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(Integer)
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON)
    status: Mapped[str] = mapped_column(String(32), index=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger)
    fine_tuned_model: Mapped[str | None] = mapped_column(String(300))
    safety_scores: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result_files: Mapped[list[str] | None] = mapped_column(JSON)  # file ids (step-metrics CSV)
    screening: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # of its training file
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # times a worker (re)started it
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(Timestamp, index=True)
    enqueued_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)


class JobEvent(Base):
    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job_id_seq", "job_id", "seq"),)

    # `seq` orders events exactly (ids from several processes may share a millisecond).
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    level: Mapped[str] = mapped_column(String(16), default="info")
    type: Mapped[str] = mapped_column(String(16), default="message")
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "step", name="uq_checkpoints_job_id_step"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"),
                                        index=True)
    org_id: Mapped[str] = mapped_column(org_fk())
    step: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(1000))
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class CuratedCorpus(Base):
    """A curated corpus the pipeline built (or reused); shared across organizations because it
    derives from public sources and the base model only, never from customer data."""

    __tablename__ = "curated_corpora"
    __table_args__ = (UniqueConstraint("base_model", "source", "config_hash",
                                       name="uq_curated_corpora_key"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    base_model: Mapped[str] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(String(500))
    config_hash: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    path: Mapped[str] = mapped_column(String(1000))
    items: Mapped[int | None] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(Timestamp)


class Adapter(Base):
    __tablename__ = "adapters"
    __table_args__ = (Index("ix_adapters_org_id_id", "org_id", "id"),)

    id: Mapped[str] = mapped_column(String(300), primary_key=True)  # ft:<base>[:<suffix>]:<rand>
    org_id: Mapped[str] = mapped_column(org_fk())
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"),
                                        unique=True)
    base_model: Mapped[str] = mapped_column(String(300))
    policy: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))  # of the archive served by /content
    bytes: Mapped[int] = mapped_column(BigInteger)
    files_sha256: Mapped[dict[str, str]] = mapped_column(JSON)
    storage_key: Mapped[str] = mapped_column(String(500))  # unpacked PEFT dir
    archive_key: Mapped[str] = mapped_column(String(500))
    safety_report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class SafetyEvaluation(Base):
    __tablename__ = "safety_evaluations"
    __table_args__ = (Index("ix_safety_evaluations_org_id_id", "org_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(org_fk())
    model: Mapped[str] = mapped_column(String(300))  # base model name or adapter id
    adapter_id: Mapped[str | None] = mapped_column(
        ForeignKey("adapters.id", ondelete="CASCADE"), index=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # prompts, limits, judges
    status: Mapped[str] = mapped_column(String(32))
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)


class WorkerHeartbeat(Base):
    """A live worker, as the registry sees it: refreshed every BUCKLE_RECONCILE_INTERVAL_S,
    removed on a clean shutdown; a row older than a few intervals is a dead worker."""

    __tablename__ = "worker_heartbeats"

    name: Mapped[str] = mapped_column(String(300), primary_key=True)  # Celery node name
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(Timestamp)
    last_seen: Mapped[datetime] = mapped_column(Timestamp, index=True)


class DashboardSession(Base):
    """A browser signed in to the dashboard with one of its organization's API keys.

    The cookie holds a random token; only its sha256 is stored (as for API keys). The session
    dies with its key (revocation is checked on every page), on logout, or at `expires_at`.
    `csrf` is the token every state-changing form must echo back.
    """

    __tablename__ = "dashboard_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(org_fk(), index=True)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"),
                                            index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
