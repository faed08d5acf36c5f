"""Authentication and the one error shape."""

from __future__ import annotations

from servicekit import make_org


def _shape(body: dict) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}


def test_missing_key_is_401_with_error_shape(client):
    r = client.get("/v1/files")
    assert r.status_code == 401
    _shape(r.json())
    assert r.json()["error"]["type"] == "authentication_error"


def test_wrong_key_is_401(client):
    r = client.get("/v1/files", headers={"Authorization": "Bearer bk-nope"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_revoked_key_is_refused(client, stack):
    from app.core.db import new_session
    from app.services.orgs import create_key, revoke_key

    org = make_org()
    assert client.get("/v1/files", headers=org.headers).status_code == 200
    with new_session() as session:
        extra = create_key(session, org.id)
        revoke_key(session, extra.id)
    r = client.get("/v1/files", headers={"Authorization": f"Bearer {extra.key}"})
    assert r.status_code == 401


def test_keys_are_stored_hashed(stack):
    from sqlalchemy import select

    from app.core.db import new_session
    from app.models import ApiKey

    org = make_org()
    with new_session() as session:
        stored = session.scalars(select(ApiKey).where(ApiKey.org_id == org.id)).all()
    assert stored and all(org.key not in (k.key_hash, k.prefix) for k in stored)


def test_unknown_route_and_bad_body_use_the_error_shape(client, org):
    r = client.get("/v1/nothing", headers=org.headers)
    assert r.status_code == 404
    _shape(r.json())
    r = client.post("/v1/fine_tuning/jobs", headers=org.headers, content=b"{not json",
                    )
    assert r.status_code == 400
    _shape(r.json())
