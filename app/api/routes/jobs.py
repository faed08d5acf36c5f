"""/v1/fine_tuning/jobs: create (Idempotency-Key), list, retrieve, cancel, events (+ live
Server-Sent Events stream), checkpoints, the safety comparison (JSON and SVG chart)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from sse_starlette.sse import EventSourceResponse

from app import broker, charts
from app.api.deps import CurrentOrg, JobId, OwnedJob, SessionDep, SettingsDep
from app.api.responses import AUTHENTICATED, error_responses
from app.api.sse import job_event_stream
from app.core.db import read_connection
from app.errors import APIError, bad_request, not_found
from app.schemas import (
    CheckpointListPublic,
    EventListPublic,
    JobCreate,
    JobListPublic,
    JobPublic,
    SafetyComparisonPublic,
)
from app.services import jobs
from app.services.comparison import METRICS, safety_comparison

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"], responses=AUTHENTICATED)
log = logging.getLogger("buckle.api")
# An SVG opened on its own is a document: no script, no fetch, no sniffing into something else.
SVG_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
               "X-Content-Type-Options": "nosniff"}


@router.post("", response_model=JobPublic, summary="Create a fine-tuning job",
             responses={**error_responses(409, description="Idempotency-Key reused with "
                                                          "another request"),
                        **error_responses(503)})
def create_job(body: JobCreate, session: SessionDep, org_id: CurrentOrg, response: Response,
               idempotency_key: Annotated[str | None, Header(
                   max_length=255, description="Retries with the same key and body return the "
                                               "first job instead of creating another.")] = None,
               ) -> JobPublic:
    job, created = jobs.create(session, org_id, body, idempotency_key)
    if created:
        try:
            broker.submit_job(job.id)  # after the commit: a worker can always read the row
        except Exception as exc:
            log.exception("could not enqueue %s", job.id)
            jobs.mark_enqueue_failed(session, job, type(exc).__name__)
            raise APIError(503, "The job queue is unavailable; the job was not started.",
                           type="server_error", code="queue_unavailable") from exc
    else:
        response.headers["Idempotent-Replayed"] = "true"
    return jobs.to_public(job)


@router.get("", response_model=JobListPublic)
def list_jobs(request: Request, session: SessionDep, org_id: CurrentOrg,
              after: str | None = None,
              limit: Annotated[int, Query(ge=1, le=100)] = 20) -> JobListPublic:
    # OpenAI's `metadata[key]=value` filter
    metadata = {k[9:-1]: v for k, v in request.query_params.items()
                if k.startswith("metadata[") and k.endswith("]")}
    if len(metadata) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in metadata.items()):
        raise bad_request("metadata filters: at most 16 `metadata[key]=value` pairs, keys ≤ 64 "
                          "and values ≤ 512 characters (as jobs store them)", param="metadata")
    rows, more = jobs.list_(session, org_id, after=after, limit=limit, metadata=metadata)
    return JobListPublic(data=[jobs.to_public(j) for j in rows], has_more=more)


@router.get("/{job_id}", response_model=JobPublic, responses=error_responses(404))
async def retrieve_job(org_id: CurrentOrg, job_id: JobId) -> Response:
    # The hot path (clients poll it): one primary-key read as a Core row, inline on the event
    # loop (it never waits on locks; a threadpool hop costs more than the query), and the
    # schema serialized once instead of validated again against response_model.
    with read_connection() as conn:
        row = jobs.read(conn, org_id, job_id)
    if row is None:
        raise not_found("fine-tuning job", job_id)
    return Response(jobs.to_public(row).model_dump_json(), media_type="application/json")


@router.post("/{job_id}/cancel", response_model=JobPublic, responses=error_responses(404))
def cancel_job(job: OwnedJob, session: SessionDep) -> JobPublic:
    return jobs.to_public(jobs.cancel(session, job))


@router.post("/{job_id}/pause", response_model=JobPublic, responses=error_responses(400, 404))
def pause_job(job: OwnedJob, session: SessionDep) -> JobPublic:
    """Stop a queued or running job at its next step, keeping its checkpoint."""
    return jobs.to_public(jobs.pause(session, job))


@router.post("/{job_id}/resume", response_model=JobPublic, responses=error_responses(400, 404))
def resume_job(job: OwnedJob, session: SessionDep) -> JobPublic:
    """Queue a paused job again; a worker continues it from its last checkpoint."""
    if jobs.resume(session, job):
        try:
            broker.submit_training(job.id)  # after the commit, as on create
        except Exception:
            # The row is `queued` with a fresh `enqueued_at`: the workers' orphan recovery
            # sends it once the broker is back (BUCKLE_REQUEUE_AFTER_S), so nothing is lost.
            log.exception("could not enqueue resumed job %s; recovery will send it", job.id)
    return jobs.to_public(job)


@router.get("/{job_id}/events", response_model=EventListPublic,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "JSON page, or with `stream=true` (or Accept: "
                                            "text/event-stream) a live SSE stream of the events "
                                            "oldest first, ending with `data: [DONE]` once the "
                                            "job has finished."},
                       **error_responses(404)})
def list_events(request: Request, job: OwnedJob, session: SessionDep, settings: SettingsDep,
                after: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 20,
                stream: bool = False,
                last_event_id: Annotated[str | None, Header()] = None):
    if stream or "text/event-stream" in request.headers.get("accept", ""):
        start = jobs.seq_of(session, job.id, last_event_id) if last_event_id else 0
        return EventSourceResponse(job_event_stream(job.id, start, settings.sse_poll_s),
                                   ping=15)
    rows, more = jobs.list_events(session, job.id, after=after, limit=limit)
    return EventListPublic(data=[jobs.event_public(e) for e in rows], has_more=more)


@router.get("/{job_id}/checkpoints", response_model=CheckpointListPublic,
            responses=error_responses(404))
def list_checkpoints(job: OwnedJob, session: SessionDep, after: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=100)] = 10) -> CheckpointListPublic:
    rows, more = jobs.list_checkpoints(session, job.id, after=after, limit=limit)
    data = [jobs.checkpoint_public(c) for c in rows]
    return CheckpointListPublic(data=data, has_more=more, first_id=data[0].id if data else None,
                                last_id=data[-1].id if data else None)




@router.get("/{job_id}/safety_comparison", response_model=SafetyComparisonPublic,
            responses=error_responses(404))
def get_safety_comparison(job: OwnedJob, session: SessionDep) -> SafetyComparisonPublic:
    """Base model vs. the organization's unprotected run of the same file (when there is one)
    vs. this job's adapter: safety with 95% CIs, and utility on the validation file."""
    return SafetyComparisonPublic(**safety_comparison(session, job))


@router.get("/{job_id}/safety_comparison.svg", response_class=Response,
            responses={200: {"content": {"image/svg+xml": {}}}, **error_responses(404)})
def get_safety_comparison_chart(job: OwnedJob, session: SessionDep) -> Response:
    """The comparison as a bar chart with CI whiskers (standalone SVG, no server paths)."""
    data = safety_comparison(session, job)
    return Response(charts.safety_bars(METRICS, data["series"], title=data["title"]),
                    media_type="image/svg+xml", headers=SVG_HEADERS)
