"""One `Settings` for the service (API, workers, CLI), read from `BUCKLE_*` env vars.

The embedded default needs no variable at all: SQLite file, kombu's filesystem broker and a local
artifact directory, all under `BUCKLE_DATA_DIR` (default `$BUCKLE_HOME/service`). Production sets
`BUCKLE_DATABASE_URL` (PostgreSQL) and `BUCKLE_BROKER_URL` (Redis); `BUCKLE_ENVIRONMENT=production`
refuses the embedded defaults so a misconfigured deployment fails at start, not at the first job.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from buckle.settings import LibrarySettings

# The API's `learning_rate_multiplier` scales this base LoRA learning rate (OpenAI-style knob).
BASE_LEARNING_RATE = 2e-4


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BUCKLE_", extra="ignore")

    environment: Literal["development", "production"] = Field(
        "development", description="`production` refuses SQLite and the filesystem broker.")
    data_dir: Path | None = Field(
        None, description="Root of the embedded default (database, broker folder, artifacts). "
                          "Default: $BUCKLE_HOME/service.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL. Default: sqlite:///$BUCKLE_DATA_DIR/buckle.db. "
                          "Production: postgresql+psycopg://user:pass@host/db.")
    broker_url: str | None = Field(
        None, description="Celery broker. Default: filesystem:// under $BUCKLE_DATA_DIR/broker "
                          "(no server). Production: redis://host:6379/0.")
    artifact_dir: Path | None = Field(
        None, description="Uploads, adapters, result files on local disk (one host). "
                          "Default: $BUCKLE_DATA_DIR/artifacts.")
    storage_url: str | None = Field(
        None, description="Object store shared by every host instead of BUCKLE_ARTIFACT_DIR: "
                          "`s3://bucket/prefix` (s3fs; credentials from the standard AWS_* "
                          "variables). Unset: local disk.")
    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible server (MinIO, Ceph, R2...): e.g. http://minio:9000.")
    download_presign_s: int = Field(
        0, ge=0, description="With an object store: > 0 answers downloads with a 307 to a "
                             "presigned URL valid this long (bytes bypass the API); 0 streams "
                             "them through the API (the store need not be reachable by "
                             "clients).")
    work_dir: Path | None = Field(
        None, description="Workers' local scratch: job work dirs (checkpoints) and cached "
                          "copies of stored inputs. Default: the artifact dir, or "
                          "$BUCKLE_DATA_DIR/work with an object store.")
    max_upload_bytes: int = Field(64 * 1024 * 1024, ge=1, description="Largest accepted upload.")
    db_pool_size: int = Field(10, ge=1, description="Connections per process (PostgreSQL).")
    # Workers -------------------------------------------------------------------------------
    train_time_limit_s: int = Field(24 * 3600, ge=60, description="Hard limit of one training task.")
    light_time_limit_s: int = Field(600, ge=10, description="Hard limit of a light task.")
    visibility_timeout_s: int = Field(
        48 * 3600, ge=10, description="Redis redelivers an unacknowledged task after this; the "
                                      "job lease (below) recovers a dead worker much sooner.")
    lease_ttl_s: float = Field(
        60.0, gt=0, description="A running job's lease; a worker renews it every third of it. "
                                "A job whose lease lapsed is resumed by another worker.")
    reconcile_interval_s: float = Field(
        30.0, gt=0, description="How often each worker looks for jobs whose worker died.")
    requeue_after_s: float = Field(
        3600.0, gt=0, description="A job still waiting for a worker after this long is sent "
                                  "again (the filesystem broker cannot redeliver a lost task).")
    cancel_poll_s: float = Field(1.0, ge=0, description="Min seconds between cancellation checks.")
    db_retry_s: float = Field(
        600.0, ge=0, description="How long a worker retries the writes a job's outcome depends "
                                 "on (release, failure) while the database is unreachable.")
    event_throttle_s: float = Field(
        1.0, ge=0, description="Min seconds between stored `train` progress events of one job.")
    checkpoint_every: int = Field(
        50, ge=0, description="Optimizer steps between a job's resumable checkpoints: a worker "
                              "killed mid-training loses at most this many steps (0 = none).")
    torch_threads: int | None = Field(
        None, ge=1, description="CPU threads of torch in each worker process. Unset: the host's "
                                "cores divided by the worker's --concurrency (two torch "
                                "processes that each take every core run ~6x slower on 2 "
                                "cores). Set it when several workers share one host.")
    pipeline: str = Field(
        "buckle.pipeline:run", description="`module:function` the train task calls; an "
                                           "alternate pipeline (tests, research) plugs in here.")
    # API -------------------------------------------------------------------------------------
    auth_cache_s: float = Field(
        5.0, ge=0, description="Seconds a verified API key is cached per API process (0 = "
                               "off); a revoked key stops working within this time.")
    sse_poll_s: float = Field(0.5, gt=0, description="How often the event stream polls.")
    max_active_jobs: int = Field(
        16, ge=0, description="Unfinished jobs one organization may have at once; more is a "
                              "429 (0 = no limit).")
    active_jobs_retry_after_s: int = Field(
        60, ge=1, description="Retry-After of the active-jobs 429.")
    rate_limit: str = Field(
        "1200/minute", description="Requests per organization (`limits` syntax, e.g. "
                                   "`20/second`); more is a 429 with Retry-After. Empty = off.")
    rate_limit_storage_url: str = Field(
        "memory://", description="Where request counts live: `memory://` (per API process) "
                                 "or `redis://host:6379/1` (shared by every API process).")
    screening_action: Literal["warn", "refuse", "harden"] = Field(
        "warn", description="What a training file over the screening threshold does to its "
                            "job: `warn` (event only), `refuse` (400 / failed job), `harden` "
                            "(an `auto` job gets a higher curated dose).")
    screening_threshold: float = Field(
        0.05, ge=0, le=1, description="Share of flagged rows above which the action applies.")
    screening_judge: str = Field("harm", description="Judge that screens training files.")
    metrics_token: str | None = Field(
        None, description="When set, GET /metrics needs `Authorization: Bearer <token>`.")

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        if value:
            from limits import parse

            parse(value)  # raises ValueError with the offending text
        return value

    @property
    def resolved_data_dir(self) -> Path:
        return (self.data_dir or LibrarySettings().home / "service").expanduser()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir / 'buckle.db'}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_dir(self) -> Path:
        return self.resolved_data_dir / "broker"

    @property
    def resolved_artifact_dir(self) -> Path:
        return (self.artifact_dir or self.resolved_data_dir / "artifacts").expanduser()

    @property
    def resolved_work_dir(self) -> Path:
        if self.work_dir:
            return self.work_dir.expanduser()
        return self.resolved_data_dir / "work" if self.storage_url \
            else self.resolved_artifact_dir

    @model_validator(mode="after")
    def _production_needs_servers(self) -> Settings:
        if self.environment == "production":
            if not self.database_url or self.database_url.startswith("sqlite"):
                raise ValueError("BUCKLE_ENVIRONMENT=production needs BUCKLE_DATABASE_URL "
                                 "(PostgreSQL); SQLite is the embedded default only")
            if not self.broker_url or self.broker_url.startswith("filesystem"):
                raise ValueError("BUCKLE_ENVIRONMENT=production needs BUCKLE_BROKER_URL (Redis)")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings; tests call `get_settings.cache_clear()` after changing env vars."""
    return Settings()
