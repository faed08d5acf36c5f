"""/v1/models: the base models jobs start from, and the organization's fine-tunes."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import CurrentOrg, SessionDep
from app.api.responses import AUTHENTICATED, error_responses
from app.errors import not_found
from app.models import epoch
from app.schemas import ModelListPublic, ModelPublic
from app.services import adapters
from app.services.base_models import base_models

router = APIRouter(prefix="/v1/models", tags=["models"], responses=AUTHENTICATED)
_EPOCH_BASE = 1_730_000_000  # presets have no creation date; a fixed one keeps answers stable


def _all(session: SessionDep, org_id: str) -> list[ModelPublic]:
    data = [ModelPublic(id=name, created=_EPOCH_BASE, owned_by="buckle")
            for name in sorted(base_models())]
    data += [ModelPublic(id=a.id, created=epoch(a.created_at), owned_by=org_id)
             for a in adapters.list_(session, org_id)]
    return data


@router.get("", response_model=ModelListPublic)
def list_models(session: SessionDep, org_id: CurrentOrg) -> ModelListPublic:
    return ModelListPublic(data=_all(session, org_id))


@router.get("/{model_id:path}", response_model=ModelPublic, responses=error_responses(404))
def retrieve_model(model_id: str, session: SessionDep, org_id: CurrentOrg) -> ModelPublic:
    for model in _all(session, org_id):
        if model.id == model_id:
            return model
    raise not_found("model", model_id)
