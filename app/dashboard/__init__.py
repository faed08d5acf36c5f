"""The dashboard: jobs, live progress, safety reports, adapters, files and corpora for people
who would rather look than read JSON. Server-rendered (Jinja2) by the API itself, with one small
hand-written script (live progress over the job's SSE stream, nothing else) and inline SVG
charts, so it needs no JavaScript toolchain and works without JavaScript except for live updates.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from app.dashboard.auth import Forbidden, NotSignedIn
from app.dashboard.pages import page, router

# Everything from this origin only, no inline script, no framing: a page cannot be made to run
# someone else's code or be clickjacked into a delete.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY", "Cache-Control": "no-store",
}


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/dashboard/static", StaticFiles(directory=Path(__file__).parent / "static"),
              name="dashboard-static")

    @app.exception_handler(NotSignedIn)
    async def _sign_in(request: Request, exc: NotSignedIn) -> Response:
        if request.url.path.endswith(("/stream", ".svg")):
            return Response(status_code=401)
        return RedirectResponse("/dashboard/login", status_code=303)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        return page(request, "error.html", None, 403, title="Refused",
                    message="This form was not sent from this dashboard page (missing or stale "
                            "CSRF token). Reload the page and try again.")

    app.add_middleware(DashboardHeaders)


class DashboardHeaders:
    """Adds SECURITY_HEADERS to every /dashboard response (pure ASGI: streams stay streams)."""

    def __init__(self, app) -> None:
        self.app = app
        self.extra = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/dashboard"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *[(k, v) for k, v in self.extra if k not in have]]
            await send(message)

        await self.app(scope, receive, send_with_headers)
