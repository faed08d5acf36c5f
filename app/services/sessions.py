"""Dashboard sessions: a browser signs in with an API key once; afterwards it carries a random
session token in an HttpOnly cookie, so the key itself never travels again (nor sits in a URL,
a log or the page). Tokens are stored hashed; a session ends with its key's revocation."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.ids import hash_api_key
from app.models import ApiKey, DashboardSession, utcnow

SESSION_TTL = timedelta(hours=12)


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the organization, and the CSRF token its forms must send back."""

    org_id: str
    csrf: str


def sign_in(session: Session, api_key: str) -> tuple[str, Viewer] | None:
    """(cookie token, viewer) for a valid, unrevoked key; None otherwise."""
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_api_key(api_key.strip()),
                                              ApiKey.revoked_at.is_(None)))
    if key is None:
        return None
    session.execute(delete(DashboardSession).where(DashboardSession.expires_at < utcnow()))
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    session.add(DashboardSession(token_hash=hash_api_key(token), org_id=key.org_id,
                                 api_key_id=key.id, csrf=csrf, created_at=utcnow(),
                                 expires_at=utcnow() + SESSION_TTL))
    session.commit()
    return token, Viewer(key.org_id, csrf)


def lookup(session: Session, token: str | None) -> Viewer | None:
    """The viewer of a live session: not expired, its key not revoked."""
    if not token:
        return None
    row = session.execute(
        select(DashboardSession.org_id, DashboardSession.csrf)
        .join(ApiKey, ApiKey.id == DashboardSession.api_key_id)
        .where(DashboardSession.token_hash == hash_api_key(token),
               DashboardSession.expires_at > utcnow(), ApiKey.revoked_at.is_(None))).first()
    return Viewer(row.org_id, row.csrf) if row else None


def sign_out(session: Session, token: str | None) -> None:
    if token:
        session.execute(delete(DashboardSession).where(
            DashboardSession.token_hash == hash_api_key(token)))
        session.commit()
