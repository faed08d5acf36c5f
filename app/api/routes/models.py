"""/v1/models: the base models jobs start from, and the organization's fine-tunes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import CurrentOrg, SessionDep, StoreDep
from app.api.pagination import page
from app.api.responses import AUTHENTICATED, error_responses
from app.errors import APIError, bad_request, not_found
from app.models import epoch
from app.schemas import ModelDeleted, ModelListPublic, ModelPublic
from app.services import adapters
from app.services.base_models import base_models

router = APIRouter(prefix="/v1/models", tags=["models"], responses=AUTHENTICATED)
_EPOCH_BASE = 1_730_000_000  # presets have no creation date; a fixed one keeps answers stable


def _all(session: SessionDep, org_id: str) -> list[ModelPublic]:
    data = [ModelPublic(id=name, created=_EPOCH_BASE, owned_by="buckle")
            for name in sorted(base_models())]
    data += [ModelPublic(id=a.id, created=epoch(a.created_at), owned_by=org_id)
             for a in adapters.list_(session, org_id)[0]]
    return data


@router.get("", response_model=ModelListPublic)
def list_models(session: SessionDep, org_id: CurrentOrg, after: str | None = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 1000) -> ModelListPublic:
    """Base models, then the organization's fine-tunes (newest first)."""
    models = _all(session, org_id)
    start = 0
    if after is not None:
        ids = [m.id for m in models]
        if after not in ids:
            raise bad_request(f"No such model: {after!r}", param="after")
        start = ids.index(after) + 1
    return page(ModelListPublic, models[start:start + limit], start + limit < len(models))


@router.delete("/{model_id:path}", response_model=ModelDeleted, responses=error_responses(403, 404))
def delete_model(model_id: str, session: SessionDep, org_id: CurrentOrg,
                 store: StoreDep) -> ModelDeleted:
    """Delete one of the organization's fine-tunes and its adapter files (not a base model)."""
    if model_id in base_models():
        raise APIError(403, f"{model_id} is a base model; only your fine-tunes can be deleted.",
                       code="model_not_deletable", param="model")
    adapters.delete(session, store, adapters.get(session, org_id, model_id))
    return ModelDeleted(id=model_id)


@router.get("/{model_id:path}", response_model=ModelPublic, responses=error_responses(404))
def retrieve_model(model_id: str, session: SessionDep, org_id: CurrentOrg) -> ModelPublic:
    for model in _all(session, org_id):
        if model.id == model_id:
            return model
    raise not_found("model", model_id)
