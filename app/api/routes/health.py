"""Liveness (/healthz), readiness (/readyz: database, broker, artifact store) and /metrics."""

from __future__ import annotations

import hmac
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text

from app import broker
from app.api.deps import SettingsDep
from app.api.responses import error_responses
from app.core.db import new_session
from app.errors import APIError
from app.metrics import render_metrics
from app.storage import get_store

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _check_database() -> str | None:
    try:
        with new_session() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - readiness reports any failure
        return f"{type(exc).__name__}: {exc}"
    return None


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(description="`ok` or the error of each dependency.")


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness,
                             "description": "The database, the broker or the artifact "
                                            "store is unreachable"}})
def readyz() -> JSONResponse:
    checks = {"database": _check_database(), "broker": broker.check_broker(),
              "storage": get_store().check()}
    ok = all(v is None for v in checks.values())
    body = {"status": "ok" if ok else "unavailable",
            "checks": {k: v or "ok" for k, v in checks.items()}}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}},
                       **error_responses(401, description="BUCKLE_METRICS_TOKEN is set and the "
                                                          "request did not send it")})
def metrics(settings: SettingsDep,
            authorization: Annotated[str | None, Header()] = None) -> Response:
    # The figures are aggregates with no organization label; an operator who does not want
    # them public sets BUCKLE_METRICS_TOKEN (Prometheus: `authorization: {credentials: ...}`).
    token = settings.metrics_token
    if token and not hmac.compare_digest((authorization or "").encode(),
                                         f"Bearer {token}".encode()):
        raise APIError(401, "GET /metrics needs `Authorization: Bearer <BUCKLE_METRICS_TOKEN>`.",
                       type="authentication_error", code="invalid_metrics_token",
                       headers={"WWW-Authenticate": "Bearer"})
    body, content_type = render_metrics()
    return Response(body, media_type=content_type)
