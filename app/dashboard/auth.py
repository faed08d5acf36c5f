"""Who is looking at a dashboard page, and whether a form that changes state may.

Sign-in trades an API key (POSTed once, never in a URL) for a session cookie: random, HttpOnly,
SameSite=Strict, scoped to /dashboard, Secure over HTTPS. State-changing forms carry the
session's CSRF token and must come from this origin (`Origin`/`Referer`), so another site can
neither read a page nor submit one.
"""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from app.api.deps import SessionDep
from app.services.sessions import Viewer, lookup

COOKIE = "buckle_session"


class NotSignedIn(Exception):
    """No live session: the page answers with a redirect to the sign-in form."""


class Forbidden(Exception):
    """A state-changing request without this session's CSRF token or from another origin."""


def current_viewer(request: Request, session: SessionDep) -> Viewer:
    viewer = lookup(session, request.cookies.get(COOKIE))
    if viewer is None:
        raise NotSignedIn
    return viewer


CurrentViewer = Annotated[Viewer, Depends(current_viewer)]


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return source is None
    here = urlsplit(str(request.base_url))
    there = urlsplit(source)
    return (there.scheme, there.netloc) == (here.scheme, here.netloc)


def check_form(request: Request, viewer: Viewer, csrf: str) -> None:
    if not same_origin(request) or not hmac.compare_digest(csrf.encode(), viewer.csrf.encode()):
        raise Forbidden


def is_https(request: Request) -> bool:
    return request.url.scheme == "https" or \
        request.headers.get("x-forwarded-proto", "").split(",")[0].strip() == "https"
