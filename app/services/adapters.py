"""Released adapters (one per succeeded job) and what the API shows of them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import not_found
from app.models import Adapter, epoch
from app.schemas import AdapterPublic
from app.services.public import scrub


def get(session: Session, org_id: str, adapter_id: str) -> Adapter:
    row = session.get(Adapter, adapter_id)
    if row is None or row.org_id != org_id:
        raise not_found("adapter", adapter_id)
    return row


def list_(session: Session, org_id: str) -> list[Adapter]:
    return list(session.scalars(select(Adapter).where(Adapter.org_id == org_id)
                                .order_by(Adapter.created_at.desc())))


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
