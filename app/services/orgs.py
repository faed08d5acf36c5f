"""Organizations and API keys: created by the admin CLI, checked on every request."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.ids import hash_api_key, new_api_key, new_id
from app.models import ApiKey, Organization, utcnow


class AdminError(ValueError):
    """A refused admin action (duplicate org name, unknown org or key)."""


@dataclass(frozen=True)
class CreatedKey:
    id: str
    org_id: str
    key: str  # shown once; only its hash is stored


def create_org(session: Session, name: str) -> Organization:
    if session.scalar(select(Organization).where(Organization.name == name)):
        raise AdminError(f"an organization named {name!r} already exists")
    org = Organization(id=new_id("org"), name=name)
    session.add(org)
    session.commit()
    return org


def find_org(session: Session, org: str) -> Organization:
    """By id or by name."""
    found = session.get(Organization, org) or session.scalar(
        select(Organization).where(Organization.name == org))
    if found is None:
        raise AdminError(f"no organization {org!r} (give its id or name)")
    return found


def create_key(session: Session, org: str, name: str = "") -> CreatedKey:
    organization = find_org(session, org)
    key = new_api_key()
    row = ApiKey(id=new_id("key"), org_id=organization.id, name=name, prefix=key[:10],
                 key_hash=hash_api_key(key))
    session.add(row)
    session.commit()
    return CreatedKey(id=row.id, org_id=organization.id, key=key)


def revoke_key(session: Session, key_id: str) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise AdminError(f"no API key {key_id!r}")
    row.revoked_at = row.revoked_at or utcnow()
    session.commit()
    return row


def list_orgs(session: Session) -> list[tuple[Organization, list[ApiKey]]]:
    orgs = session.scalars(select(Organization).order_by(Organization.created_at)).all()
    keys = session.scalars(select(ApiKey).order_by(ApiKey.created_at)).all()
    return [(o, [k for k in keys if k.org_id == o.id]) for o in orgs]


class KeyCache:
    """Verified key hash -> org id, for `ttl` seconds (a revoked key works at most that long)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str, float]] = {}

    def get(self, key_hash: str) -> str | None:
        hit = self._entries.get(key_hash)
        if hit and hit[1] > time.monotonic():
            return hit[0]
        return None

    def put(self, key_hash: str, org_id: str, ttl: float) -> None:
        if ttl > 0:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key_hash] = (org_id, time.monotonic() + ttl)


key_cache = KeyCache()


def cached_org(api_key: str) -> str | None:
    return key_cache.get(hash_api_key(api_key))


def authenticate(session: Session, api_key: str, cache_ttl: float) -> str | None:
    """The org id owning this (unrevoked) key, or None."""
    key_hash = hash_api_key(api_key)
    if (org_id := key_cache.get(key_hash)) is not None:
        return org_id
    org_id = session.scalar(select(ApiKey.org_id).where(ApiKey.key_hash == key_hash,
                                                        ApiKey.revoked_at.is_(None)))
    if org_id is not None:
        key_cache.put(key_hash, org_id, cache_ttl)
    return org_id
