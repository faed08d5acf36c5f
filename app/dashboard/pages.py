"""/dashboard: server-rendered pages over the same services and tenancy rules as /v1."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sse_starlette.sse import EventSourceResponse

from app import charts
from app.api.deps import SessionDep, SettingsDep, StoreDep
from app.api.downloads import artifact_response
from app.api.sse import job_event_stream
from app.dashboard import views
from app.dashboard.auth import COOKIE, CurrentViewer, check_form, is_https, same_origin
from app.errors import APIError
from app.models import File
from app.services import adapters, files, jobs, sessions
from app.services.comparison import METRICS
from app.services.sessions import Viewer

router = APIRouter(prefix="/dashboard", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.globals.update(
    pct=lambda v: "–" if v is None else f"{v:.0%}",
    ts=lambda t: "–" if t is None else datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S"))


def page(request: Request, name: str, viewer: Viewer | None, code: int = 200,
         **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"viewer": viewer, **context},
                                      status_code=code)


def not_found_page(request: Request, viewer: Viewer, what: str) -> HTMLResponse:
    return page(request, "error.html", viewer, 404, title="Not found",
                message=f"No {what} with that id in your organization.")


@router.get("")
def home() -> RedirectResponse:
    return RedirectResponse("/dashboard/jobs", status_code=303)


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return page(request, "login.html", None)


@router.post("/login")
def login(request: Request, session: SessionDep,
          api_key: Annotated[str, Form(max_length=200)] = "") -> Response:
    if not same_origin(request):
        return page(request, "login.html", None, 403, error="Sign in from this site's own page.")
    signed = sessions.sign_in(session, api_key) if api_key else None
    if signed is None:
        return page(request, "login.html", None, 401,
                    error="That API key is not valid (or was revoked). Paste a key from "
                          "`buckle admin create-key`.")
    token, _ = signed
    response = RedirectResponse("/dashboard/jobs", status_code=303)
    response.set_cookie(COOKIE, token, max_age=int(sessions.SESSION_TTL.total_seconds()),
                        path="/dashboard", httponly=True, samesite="strict",
                        secure=is_https(request))
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, viewer: CurrentViewer,
           csrf: Annotated[str, Form()] = "") -> RedirectResponse:
    check_form(request, viewer, csrf)
    sessions.sign_out(session, request.cookies.get(COOKIE))
    response = RedirectResponse("/dashboard/login", status_code=303)
    response.delete_cookie(COOKIE, path="/dashboard")
    return response


@router.get("/jobs")
def job_list(request: Request, session: SessionDep, viewer: CurrentViewer,
             status: Annotated[str, Query(max_length=32)] = "") -> HTMLResponse:
    status = status if status in views.STATUSES else ""
    return page(request, "jobs.html", viewer, rows=views.job_list(session, viewer.org_id, status),
                status=status, statuses=views.STATUSES)


@router.get("/jobs/{job_id}")
def job_detail(request: Request, job_id: str, session: SessionDep, viewer: CurrentViewer,
               q: Annotated[str, Query(max_length=200)] = "",
               verdict: Annotated[str, Query(max_length=16)] = "") -> HTMLResponse:
    data = views.job_page(session, viewer.org_id, job_id, q, verdict)
    if data is None:
        return not_found_page(request, viewer, "fine-tuning job")
    safety = charts.safety_bars(METRICS, data["series"], title=data["chart_title"])
    return page(request, "job.html", viewer, **data, safety_chart=safety,
                loss_chart=charts.loss_curve(data["loss"]), metrics=METRICS)


@router.get("/jobs/{job_id}/loss.svg")
def job_loss(job_id: str, session: SessionDep, viewer: CurrentViewer) -> Response:
    if jobs.get(session, viewer.org_id, job_id) is None:
        return Response(status_code=404)
    return Response(charts.loss_curve(views.loss_points(session, job_id)),
                    media_type="image/svg+xml")


@router.get("/jobs/{job_id}/stream")
def job_stream(job_id: str, session: SessionDep, viewer: CurrentViewer,
               settings: SettingsDep) -> Response:
    if jobs.get(session, viewer.org_id, job_id) is None:
        return Response(status_code=404)
    return EventSourceResponse(job_event_stream(job_id, 0, settings.sse_poll_s), ping=15)


@router.post("/jobs/{job_id}/cancel")
def job_cancel(request: Request, job_id: str, session: SessionDep, viewer: CurrentViewer,
               csrf: Annotated[str, Form()] = "") -> Response:
    check_form(request, viewer, csrf)
    job = jobs.get(session, viewer.org_id, job_id)
    if job is None:
        return not_found_page(request, viewer, "fine-tuning job")
    jobs.cancel(session, job)
    return RedirectResponse(f"/dashboard/jobs/{job_id}", status_code=303)


@router.get("/adapters")
def adapter_list(request: Request, session: SessionDep, viewer: CurrentViewer) -> HTMLResponse:
    rows, _ = adapters.list_(session, viewer.org_id, limit=200)
    return page(request, "adapters.html", viewer, rows=rows,
                deleted=request.query_params.get("deleted"))


@router.get("/adapters/{adapter_id}/download")
def adapter_download(request: Request, adapter_id: str, session: SessionDep,
                     viewer: CurrentViewer, store: StoreDep) -> Response:
    try:
        row = adapters.get(session, viewer.org_id, adapter_id)
        return artifact_response(store, row.archive_key,
                                 filename=row.id.replace(":", "_") + ".tar.gz",
                                 media_type="application/gzip", sha256=row.sha256,
                                 what="adapter content", ident=row.id)
    except APIError:
        return not_found_page(request, viewer, "adapter")


@router.post("/adapters/{adapter_id}/delete")
def adapter_delete(request: Request, adapter_id: str, session: SessionDep, viewer: CurrentViewer,
                   store: StoreDep, csrf: Annotated[str, Form()] = "") -> Response:
    check_form(request, viewer, csrf)
    try:
        row = adapters.get(session, viewer.org_id, adapter_id)
    except APIError:
        return not_found_page(request, viewer, "adapter")
    adapters.delete(session, store, row)
    return RedirectResponse(f"/dashboard/adapters?deleted={adapter_id}", status_code=303)


@router.get("/files")
def file_list(request: Request, session: SessionDep, viewer: CurrentViewer) -> HTMLResponse:
    rows: list[File]
    rows, _ = files.list_(session, viewer.org_id, after=None, limit=500, purpose=None,
                          order="desc")
    return page(request, "files.html", viewer, rows=rows)


@router.get("/corpora")
def corpus_list(request: Request, session: SessionDep, viewer: CurrentViewer) -> HTMLResponse:
    return page(request, "corpora.html", viewer, rows=views.corpora(session))
