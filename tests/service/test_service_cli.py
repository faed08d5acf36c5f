"""The admin CLI creates organizations and keys the API accepts."""

from __future__ import annotations

from typer.testing import CliRunner

from app.cli import app


def test_admin_creates_org_and_key_that_authenticate(tmp_path, monkeypatch):
    monkeypatch.delenv("BUCKLE_DATABASE_URL", raising=False)
    monkeypatch.setenv("BUCKLE_DATA_DIR", str(tmp_path))  # restored after the test
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path)]
    org = runner.invoke(app, ["admin", "create-org", "acme", *data])
    assert org.exit_code == 0, org.output
    org_id = org.stdout.strip().splitlines()[-1]
    assert org_id.startswith("org-")
    dup = runner.invoke(app, ["admin", "create-org", "acme", *data])
    assert dup.exit_code == 1 and "already exists" in dup.output
    key = runner.invoke(app, ["admin", "create-key", "acme", "--name", "ci", *data])
    assert key.exit_code == 0, key.output
    api_key = key.stdout.strip().splitlines()[-1]
    assert api_key.startswith("bk-")

    from fastapi.testclient import TestClient

    from app.main import app as api
    from app.services.orgs import key_cache

    key_cache._entries.clear()
    with TestClient(api) as client:
        headers = {"Authorization": f"Bearer {api_key}"}
        assert client.get("/v1/files", headers=headers).status_code == 200
        listed = runner.invoke(app, ["admin", "list-orgs", *data])
        assert "acme" in listed.stdout
        key_id = next(w for w in listed.stdout.split() if w.startswith("key-"))
        assert runner.invoke(app, ["admin", "revoke-key", key_id, *data]).exit_code == 0
        key_cache._entries.clear()
        assert client.get("/v1/files", headers=headers).status_code == 401
