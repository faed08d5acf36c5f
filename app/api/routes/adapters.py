"""/v1/adapters: a released adapter's facts and its archive (PEFT files + safety_report.json)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import FileResponse

from app.api.deps import CurrentOrg, OwnedAdapter, SessionDep, StoreDep
from app.api.responses import AUTHENTICATED, error_responses
from app.errors import not_found
from app.schemas import AdapterListPublic, AdapterPublic, EvaluationListPublic
from app.services import adapters, evaluations

router = APIRouter(prefix="/v1/adapters", tags=["adapters"], responses=AUTHENTICATED)
log = logging.getLogger("buckle.api")


@router.get("", response_model=AdapterListPublic)
def list_adapters(session: SessionDep, org_id: CurrentOrg) -> AdapterListPublic:
    return AdapterListPublic(data=[adapters.to_public(a) for a in adapters.list_(session, org_id)])


@router.get("/{adapter_id}", response_model=AdapterPublic, responses=error_responses(404))
def retrieve_adapter(adapter: OwnedAdapter) -> AdapterPublic:
    return adapters.to_public(adapter)


@router.get("/{adapter_id}/content", response_class=FileResponse,
            responses={200: {"content": {"application/gzip": {}},
                             "description": "tar.gz of the PEFT files + safety_report.json; "
                                            "its sha256 is in X-Buckle-Sha256 and the ETag."},
                       **error_responses(404)})
def adapter_content(adapter: OwnedAdapter, store: StoreDep) -> FileResponse:
    if not store.exists(adapter.archive_key):
        log.error("adapter %s: archive %s is missing", adapter.id, adapter.archive_key)
        raise not_found("adapter content", adapter.id)
    name = adapter.id.replace(":", "_") + ".tar.gz"
    return FileResponse(store.path(adapter.archive_key), media_type="application/gzip",
                        filename=name, headers={"X-Buckle-Sha256": adapter.sha256,
                                                "ETag": f'"{adapter.sha256}"'})


@router.get("/{adapter_id}/evaluations", response_model=EvaluationListPublic,
            responses=error_responses(404))
def adapter_evaluations(adapter: OwnedAdapter, session: SessionDep,
                        org_id: CurrentOrg) -> EvaluationListPublic:
    rows = evaluations.list_(session, org_id, adapter.id)
    return EvaluationListPublic(data=[evaluations.to_public(r) for r in rows])
