"""/v1/adapters: a released adapter's facts and its archive (PEFT files + safety_report.json)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from app.api.deps import CurrentOrg, OwnedAdapter, SessionDep, StoreDep
from app.api.downloads import artifact_response
from app.api.pagination import page
from app.api.responses import AUTHENTICATED, error_responses
from app.schemas import AdapterListPublic, AdapterPublic, EvaluationListPublic
from app.services import adapters, evaluations

router = APIRouter(prefix="/v1/adapters", tags=["adapters"], responses=AUTHENTICATED)


@router.get("", response_model=AdapterListPublic)
def list_adapters(session: SessionDep, org_id: CurrentOrg, after: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=100)] = 20) -> AdapterListPublic:
    rows, more = adapters.list_(session, org_id, after=after, limit=limit)
    return page(AdapterListPublic, [adapters.to_public(a) for a in rows], more)


@router.get("/{adapter_id}", response_model=AdapterPublic, responses=error_responses(404))
def retrieve_adapter(adapter: OwnedAdapter) -> AdapterPublic:
    return adapters.to_public(adapter)


@router.get("/{adapter_id}/content", response_class=Response,
            responses={200: {"content": {"application/gzip": {}},
                             "description": "tar.gz of the PEFT files + safety_report.json; "
                                            "its sha256 is in X-Buckle-Sha256 and the ETag."},
                       307: {"description": "A presigned URL of the object store (when the "
                                            "server sets BUCKLE_DOWNLOAD_PRESIGN_S)"},
                       **error_responses(404)})
def adapter_content(adapter: OwnedAdapter, store: StoreDep) -> Response:
    return artifact_response(store, adapter.archive_key,
                             filename=adapter.id.replace(":", "_") + ".tar.gz",
                             media_type="application/gzip", sha256=adapter.sha256,
                             what="adapter content", ident=adapter.id)


@router.get("/{adapter_id}/evaluations", response_model=EvaluationListPublic,
            responses=error_responses(404))
def adapter_evaluations(adapter: OwnedAdapter, session: SessionDep, org_id: CurrentOrg,
                        after: str | None = None,
                        limit: Annotated[int, Query(ge=1, le=100)] = 20) -> EvaluationListPublic:
    rows, more = evaluations.list_(session, org_id, adapter.id, after=after, limit=limit)
    return page(EvaluationListPublic, [evaluations.to_public(r) for r in rows], more)
