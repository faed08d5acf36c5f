"""/v1/safety/evaluations: score a base model or an adapter on a prompt set (run by a worker)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query

from app import broker
from app.api.deps import CurrentOrg, SessionDep
from app.api.pagination import page
from app.api.responses import AUTHENTICATED, error_responses
from app.errors import APIError
from app.schemas import EvaluationCreate, EvaluationListPublic, EvaluationPublic
from app.services import evaluations

router = APIRouter(prefix="/v1/safety/evaluations", tags=["safety"],
                   responses=AUTHENTICATED)
log = logging.getLogger("buckle.api")


@router.post("", response_model=EvaluationPublic, responses=error_responses(503))
def create_evaluation(body: EvaluationCreate, session: SessionDep,
                      org_id: CurrentOrg) -> EvaluationPublic:
    row = evaluations.create(session, org_id, body)
    try:
        broker.submit_evaluation(row.id)
    except Exception as exc:
        log.exception("could not enqueue %s", row.id)
        row.status, row.error = "failed", {"code": "queue_unavailable",
                                           "message": "The queue is unavailable.", "param": None}
        session.commit()
        raise APIError(503, "The job queue is unavailable; the evaluation was not started.",
                       type="server_error", code="queue_unavailable") from exc
    return evaluations.to_public(row)


@router.get("", response_model=EvaluationListPublic)
def list_evaluations(session: SessionDep, org_id: CurrentOrg, adapter: str | None = None,
                     after: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=100)] = 20) -> EvaluationListPublic:
    rows, more = evaluations.list_(session, org_id, adapter, after=after, limit=limit)
    return page(EvaluationListPublic, [evaluations.to_public(r) for r in rows], more)


@router.get("/{evaluation_id}", response_model=EvaluationPublic,
            responses=error_responses(404))
def retrieve_evaluation(evaluation_id: str, session: SessionDep,
                        org_id: CurrentOrg) -> EvaluationPublic:
    return evaluations.to_public(evaluations.get(session, org_id, evaluation_id))
