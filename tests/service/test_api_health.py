"""Health, readiness (database, broker, artifact store) and Prometheus metrics."""

from __future__ import annotations


def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_database_broker_and_storage(client):
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"database": "ok", "broker": "ok", "storage": "ok"}


def test_readyz_reports_a_dead_broker(client, monkeypatch):
    from app.core.config import get_settings

    monkeypatch.setenv("BUCKLE_BROKER_URL", "redis://127.0.0.1:1/0")
    get_settings.cache_clear()
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["broker"] != "ok"


def test_metrics_expose_requests_and_jobs(client, org):
    client.get("/v1/files", headers=org.headers)
    text = client.get("/metrics").text
    assert 'buckle_http_requests_total{method="GET",route="/v1/files",status="200"}' in text
    assert "buckle_jobs" in text


def test_metrics_are_tenant_free_and_can_require_a_token(client, org, monkeypatch):
    from app.core.config import get_settings

    client.get("/v1/files", headers=org.headers)
    text = client.get("/metrics").text
    assert org.id not in text and "org-" not in text  # aggregates only, no tenant labels
    monkeypatch.setenv("BUCKLE_METRICS_TOKEN", "s3cret")
    get_settings.cache_clear()
    for headers in ({}, {"Authorization": "Bearer wrong"}, org.headers):
        r = client.get("/metrics", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_metrics_token"
    r = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200 and "buckle_jobs" in r.text
