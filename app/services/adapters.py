"""Released adapters (one per succeeded job) and what the API shows of them."""

from __future__ import annotations

from pathlib import PurePosixPath

from sqlalchemy import delete as sa_delete
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import bad_request, not_found
from app.models import Adapter, SafetyEvaluation, epoch
from app.schemas import AdapterPublic
from app.services.public import scrub
from app.storage import ArtifactStore


def get(session: Session, org_id: str, adapter_id: str) -> Adapter:
    row = session.get(Adapter, adapter_id)
    if row is None or row.org_id != org_id:
        raise not_found("adapter", adapter_id)
    return row


def list_(session: Session, org_id: str, *, after: str | None = None,
          limit: int | None = None) -> tuple[list[Adapter], bool]:
    """Newest first. An adapter id ends with its job's time-ordered id, so the job id is the
    cursor key; `after` is an adapter id of the previous page."""
    q = select(Adapter).where(Adapter.org_id == org_id)
    if after:
        cursor = session.get(Adapter, after)
        if cursor is None or cursor.org_id != org_id:
            raise bad_request(f"No such adapter: {after!r}", param="after")
        q = q.where(Adapter.job_id < cursor.job_id)
    q = q.order_by(Adapter.job_id.desc())
    rows = list(session.scalars(q if limit is None else q.limit(limit + 1)))
    if limit is None:
        return rows, False
    return rows[:limit], len(rows) > limit


def delete(session: Session, store: ArtifactStore, row: Adapter) -> None:
    """Delete a fine-tune: its evaluations, its registry row, then its files (PEFT folder and
    archive). The job stays, as OpenAI keeps it; its `fine_tuned_model` then names nothing."""
    session.execute(sa_delete(SafetyEvaluation).where(SafetyEvaluation.adapter_id == row.id))
    keys = (row.storage_key, row.archive_key)
    session.delete(row)
    session.commit()
    for key in keys:
        store.delete(key)
    store.delete(str(PurePosixPath(row.storage_key).parent))  # the release attempt's folder


def to_public(row: Adapter) -> AdapterPublic:
    return AdapterPublic(id=row.id, created_at=epoch(row.created_at), base_model=row.base_model,
                         policy=row.policy, fine_tuning_job_id=row.job_id, sha256=row.sha256,
                         bytes=row.bytes, files=row.files_sha256,
                         safety_report=_report(row))


def _report(row: Adapter) -> dict | None:
    report = scrub(row.safety_report)
    if report is not None and "adapter" in report:  # a server path in the file; say the id
        report["adapter"] = row.id
    return report
