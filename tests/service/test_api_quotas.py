"""Per-organization limits: unfinished jobs and request rate answer 429 with Retry-After in the
OpenAI error envelope (the official SDK raises RateLimitError); other organizations are not
affected; with Redis storage the rate is shared by every API process."""

from __future__ import annotations

import httpx
import openai
import pytest
from conftest import _reset_caches
from servicekit import make_org, upload

MODEL = "smollm2-135m-instruct"


def _settings(monkeypatch, **env: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _reset_caches()


def _job(client, org, file_id):
    return client.post("/v1/fine_tuning/jobs", headers=org.headers,
                       json={"model": MODEL, "training_file": file_id})


def test_active_jobs_limit_is_a_429_until_one_finishes(client, org, other_org, monkeypatch):
    _settings(monkeypatch, BUCKLE_MAX_ACTIVE_JOBS="2", BUCKLE_ACTIVE_JOBS_RETRY_AFTER_S="42")
    f = upload(client, org).json()["id"]
    first, second = _job(client, org, f), _job(client, org, f)
    assert first.status_code == second.status_code == 200
    r = _job(client, org, f)
    assert r.status_code == 429, r.text
    assert r.headers["Retry-After"] == "42"
    assert r.json()["error"] == {"message": r.json()["error"]["message"],
                                 "type": "rate_limit_error", "param": None,
                                 "code": "too_many_active_jobs"}
    assert "2 unfinished" in r.json()["error"]["message"]
    assert len(client.get("/v1/fine_tuning/jobs", headers=org.headers).json()["data"]) == 2
    # another organization has its own allowance
    assert _job(client, other_org, upload(client, other_org).json()["id"]).status_code == 200
    # a finished (cancelled) job frees its slot
    client.post(f"/v1/fine_tuning/jobs/{first.json()['id']}/cancel", headers=org.headers)
    assert _job(client, org, f).status_code == 200


def test_request_rate_limit_is_per_org_with_retry_after(client, org, other_org, monkeypatch):
    _settings(monkeypatch, BUCKLE_RATE_LIMIT="5/minute")
    codes = [client.get("/v1/files", headers=org.headers).status_code for _ in range(7)]
    assert codes == [200] * 5 + [429] * 2
    r = client.get("/v1/models", headers=org.headers)
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 60
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    assert client.get("/v1/files", headers=other_org.headers).status_code == 200
    assert client.get("/healthz").status_code == 200  # unauthenticated probes are not counted


def test_openai_sdk_sees_rate_limit_error(fresh_stack):
    url = fresh_stack.start_api(BUCKLE_RATE_LIMIT="2/minute")
    org = make_org()
    sdk = openai.OpenAI(api_key=org.key, base_url=url + "/v1", max_retries=0)
    sdk.fine_tuning.jobs.list()
    sdk.fine_tuning.jobs.list()
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.fine_tuning.jobs.list()
    assert caught.value.code == "rate_limit_exceeded"
    assert int(caught.value.response.headers["Retry-After"]) >= 1


def test_rate_is_shared_by_api_processes_through_redis(fresh_stack, redis_server):
    url = fresh_stack.start_api(workers=2, BUCKLE_RATE_LIMIT="10/minute",
                                BUCKLE_RATE_LIMIT_STORAGE_URL=redis_server.url(0))
    org = make_org()
    with httpx.Client(base_url=url, headers=org.headers) as api:
        codes = [api.get("/v1/files").status_code for _ in range(30)]
    # 30 requests spread over two processes: exactly the shared 10 succeed
    assert codes.count(200) == 10 and codes.count(429) == 20, codes
