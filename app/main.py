"""The FastAPI application: routers, the one error shape, metrics, the input guards."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app import dashboard, errors
from app.api.guards import InputGuard, UploadSizeGuard
from app.api.routes import adapters, files, health, jobs, models, safety
from app.metrics import MetricsMiddleware

DESCRIPTION = """
Buckle fine-tunes LoRA adapters that stay safe: customer data is mixed with curated,
safety-conscious data (CTRL) before, during or after training, and every released adapter
ships with a measured safety report. The API follows OpenAI's fine-tuning API, so the official
`openai` SDK works by changing `base_url`; Buckle's `safety` options travel in `extra_body`.

Authenticate with `Authorization: Bearer <api key>` (keys: `buckle admin create-key`).
Errors always have the shape `{"error": {"message", "type", "param", "code"}}`.
"""


def _openapi_without_422(app: FastAPI):
    """FastAPI documents a 422 on every operation; Buckle answers those errors with 400 (see
    app.errors), which each route documents, so the 422 entries and their schemas go."""
    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema
    return openapi


def create_app() -> FastAPI:
    app = FastAPI(title="Buckle", version="0.1.0", description=DESCRIPTION)
    app.openapi = _openapi_without_422(app)
    errors.install(app)
    for module in (files, jobs, adapters, models, safety, health):
        app.include_router(module.router)
    dashboard.install(app)
    app.add_middleware(UploadSizeGuard)
    app.add_middleware(InputGuard)
    app.add_middleware(MetricsMiddleware)
    return app


app = create_app()
