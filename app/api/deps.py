"""Request dependencies: a session per request, the caller's organization, owned resources.

Routes never open sessions, decode keys or check ownership themselves; an id that belongs to
another organization is answered exactly like an unknown one (404).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Path, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.core.config import Settings, get_settings
from app.core.db import new_session
from app.errors import APIError, not_found
from app.models import Adapter, FineTuningJob
from app.services import adapters, jobs, orgs, quotas
from app.storage import ArtifactStore, get_store


async def get_session(request: Request) -> AsyncIterator[Session]:
    # Async on purpose: creating a Session does no I/O (it connects on first use), and a sync
    # dependency costs a threadpool hop on every request. Closing returns the connection to
    # the pool (one ROLLBACK round trip), done inline for the same reason.
    session = new_session(read_only=request.method in ("GET", "HEAD"))
    try:
        yield session
    finally:
        session.close()


async def settings_dep() -> Settings:  # async: a sync dependency costs a threadpool hop
    return get_settings()


async def store_dep() -> ArtifactStore:
    return get_store()


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(settings_dep)]
StoreDep = Annotated[ArtifactStore, Depends(store_dep)]

_AUTH_HINT = {"WWW-Authenticate": "Bearer"}


def _authenticate(key: str, cache_ttl: float) -> str | None:
    with new_session(read_only=True) as session:
        return orgs.authenticate(session, key, cache_ttl)


async def current_org(settings: SettingsDep,
                      authorization: Annotated[str | None, Header()] = None) -> str:
    # No SessionDep: a cache hit (nearly every request) needs no session at all.
    if not authorization or not authorization.lower().startswith("bearer "):
        raise APIError(401, "Missing API key: send `Authorization: Bearer <key>` (an admin "
                            "creates keys with `buckle admin create-key`).",
                       type="authentication_error", code="missing_api_key", headers=_AUTH_HINT)
    key = authorization[7:].strip()
    org_id = orgs.cached_org(key)  # no I/O on a hit
    if org_id is None:
        org_id = await run_in_threadpool(_authenticate, key, settings.auth_cache_s)
    if org_id is None:
        raise APIError(401, "Incorrect or revoked API key.", type="authentication_error",
                       code="invalid_api_key", headers=_AUTH_HINT)
    if quotas.rate_limit_is_local():  # in memory: microseconds, inline on the event loop
        quotas.check_rate(org_id)
    else:  # a shared store (Redis) is network I/O
        await run_in_threadpool(quotas.check_rate, org_id)
    return org_id


CurrentOrg = Annotated[str, Depends(current_org)]


JobId = Annotated[str, Path(description="A fine-tuning job id (ftjob-…).")]


async def owned_job(session: SessionDep, org_id: CurrentOrg, job_id: JobId) -> FineTuningJob:
    # For the routes that act on a job (cancel, events, checkpoints); polling one reads a Core
    # row instead (routes/jobs.py::retrieve_job). The lookup is one primary-key read that never
    # waits on locks (PostgreSQL MVCC; SQLite WAL readers), so it runs inline on the event loop:
    # a threadpool hop costs more than the query on a busy 2-core machine.
    job = jobs.get(session, org_id, job_id)
    if job is None:
        raise not_found("fine-tuning job", job_id)
    return job


OwnedJob = Annotated[FineTuningJob, Depends(owned_job)]


def owned_adapter(session: SessionDep, org_id: CurrentOrg,
                  adapter_id: Annotated[str, Path(description="An adapter id (ft:…).")]
                  ) -> Adapter:
    return adapters.get(session, org_id, adapter_id)


OwnedAdapter = Annotated[Adapter, Depends(owned_adapter)]
