"""Safety evaluations of a base model or an adapter on a named or uploaded prompt set."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import not_found
from app.ids import new_id
from app.models import SafetyEvaluation, epoch, utcnow
from app.schemas import EvaluationCreate, EvaluationPublic
from app.services import data_refs
from app.services.public import scrub


def _stored(ref: data_refs.Ref | None) -> dict[str, str] | None:
    """How the worker finds a prompt set: a built-in name, or the org's file by storage key."""
    if ref is None:
        return None
    if ref.file is None:
        return {"name": ref.name}
    return {"file_id": ref.file.id, "storage_key": ref.file.storage_key}


def create(session: Session, org_id: str, body: EvaluationCreate) -> SafetyEvaluation:
    refs = data_refs.check(session, org_id, body)
    adapter = refs[("model",)].adapter
    config = {
        "base_model": adapter.base_model if adapter else body.model, "prompts": body.prompts,
        "limit": body.limit, "prompt_set": _stored(refs[("prompts",)]),
        "benign": body.benign, "benign_limit": body.benign_limit, "judges": body.judges,
        "benign_set": _stored(refs.get(("benign",))),
    }
    row = SafetyEvaluation(id=new_id("safeval"), org_id=org_id, model=body.model,
                           adapter_id=adapter.id if adapter else None, config=config,
                           status="queued", created_at=utcnow())
    session.add(row)
    session.commit()
    return row


def get(session: Session, org_id: str, eval_id: str) -> SafetyEvaluation:
    row = session.get(SafetyEvaluation, eval_id)
    if row is None or row.org_id != org_id:
        raise not_found("safety evaluation", eval_id)
    return row


def list_(session: Session, org_id: str, adapter_id: str | None, *, after: str | None = None,
          limit: int = 20) -> tuple[list[SafetyEvaluation], bool]:
    """Newest first (ids sort by creation); `after` is the last id of the previous page."""
    q = select(SafetyEvaluation).where(SafetyEvaluation.org_id == org_id)
    if adapter_id:
        q = q.where(SafetyEvaluation.adapter_id == adapter_id)
    if after:
        q = q.where(SafetyEvaluation.id < after)
    rows = list(session.scalars(q.order_by(SafetyEvaluation.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def to_public(row: SafetyEvaluation) -> EvaluationPublic:
    public_config = {k: v for k, v in row.config.items() if k not in ("prompt_set", "benign_set")}
    return EvaluationPublic(id=row.id, created_at=epoch(row.created_at),
                            finished_at=epoch(row.finished_at), model=row.model,
                            adapter_id=row.adapter_id, status=row.status, config=public_config,
                            report=_report(row), error=scrub(row.error))


def _report(row: SafetyEvaluation) -> dict | None:
    report = scrub(row.report)
    if report is not None:  # the report names the adapter by its server path; say its id
        report["adapter"] = row.adapter_id
    return report
