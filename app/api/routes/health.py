"""Liveness (/healthz), readiness (/readyz: database + broker) and Prometheus /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.core.db import new_session
from app.metrics import render_metrics

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


def _check_broker() -> str | None:
    from workers.celery_app import sender

    celery_app = sender()

    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return None


@router.get("/readyz")
def readyz() -> JSONResponse:
    checks = {"database": _check_database(), "broker": _check_broker()}
    ok = all(v is None for v in checks.values())
    body = {"status": "ok" if ok else "unavailable",
            "checks": {k: v or "ok" for k, v in checks.items()}}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response)
def metrics() -> Response:
    body, content_type = render_metrics()
    return Response(body, media_type=content_type)
