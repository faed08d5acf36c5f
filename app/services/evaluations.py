"""Safety evaluations of a base model or an adapter on a named or uploaded prompt set."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import bad_request, not_found
from app.ids import new_id
from app.models import Adapter, File, SafetyEvaluation, epoch, utcnow
from app.schemas import EvaluationCreate, EvaluationPublic
from app.services.base_models import base_models
from buckle.data import list_sources


def _prompt_set(session: Session, org_id: str, name: str, param: str) -> dict[str, str]:
    if name in list_sources():
        return {"name": name}
    row = session.get(File, name)
    if row is not None and row.org_id == org_id:
        return {"file_id": row.id, "storage_key": row.storage_key}
    raise bad_request(f"Unknown prompt set {name!r}: use one of {', '.join(list_sources())} or "
                      "the id of a file you uploaded (purpose 'evals')", param=param,
                      code="unknown_prompt_set")


def create(session: Session, org_id: str, body: EvaluationCreate) -> SafetyEvaluation:
    adapter_id = None
    if body.model in base_models():
        base = body.model
    else:
        adapter = session.get(Adapter, body.model)
        if adapter is None or adapter.org_id != org_id:
            raise bad_request(f"Unknown model {body.model!r}: give a base model or one of your "
                              "adapters (GET /v1/models)", param="model",
                              code="model_not_found")
        adapter_id, base = adapter.id, adapter.base_model
    config = {
        "base_model": base, "prompts": body.prompts, "limit": body.limit,
        "prompt_set": _prompt_set(session, org_id, body.prompts, "prompts"),
        "benign": body.benign, "benign_limit": body.benign_limit, "judges": body.judges,
        "benign_set": _prompt_set(session, org_id, body.benign, "benign") if body.benign
        else None,
    }
    row = SafetyEvaluation(id=new_id("safeval"), org_id=org_id, model=body.model,
                           adapter_id=adapter_id, config=config, status="queued",
                           created_at=utcnow())
    session.add(row)
    session.commit()
    return row


def get(session: Session, org_id: str, eval_id: str) -> SafetyEvaluation:
    row = session.get(SafetyEvaluation, eval_id)
    if row is None or row.org_id != org_id:
        raise not_found("safety evaluation", eval_id)
    return row


def list_(session: Session, org_id: str, adapter_id: str | None) -> list[SafetyEvaluation]:
    q = select(SafetyEvaluation).where(SafetyEvaluation.org_id == org_id)
    if adapter_id:
        q = q.where(SafetyEvaluation.adapter_id == adapter_id)
    return list(session.scalars(q.order_by(SafetyEvaluation.id.desc()).limit(100)))


def to_public(row: SafetyEvaluation) -> EvaluationPublic:
    public_config = {k: v for k, v in row.config.items() if k not in ("prompt_set", "benign_set")}
    return EvaluationPublic(id=row.id, created_at=epoch(row.created_at),
                            finished_at=epoch(row.finished_at), model=row.model,
                            adapter_id=row.adapter_id, status=row.status, config=public_config,
                            report=row.report, error=row.error)
