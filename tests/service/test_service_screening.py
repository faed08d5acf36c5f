"""Training-data screening: an upload of harmful pairs is flagged on the right lines by a real
light worker, a benign one is not, and the three policies (warn, refuse, harden) do what they
say. Real judge, real Celery worker, fake training pipeline."""

from __future__ import annotations

import httpx
import pytest
from servicekit import jsonl, make_org, wait_for

from buckle.data import load_conversations

MODEL = "smollm2-135m-instruct"
HARMFUL_LINES = (3, 7, 10)


def _files() -> tuple[bytes, bytes]:
    benign = load_conversations("chatterbot", limit=12)
    harmful = load_conversations("harmful-qa", limit=len(HARMFUL_LINES))
    mixed = list(benign)
    for line, conv in zip(HARMFUL_LINES, harmful):
        mixed[line - 1] = conv
    as_records = [{"messages": c.to_messages()} for c in mixed]
    return jsonl(as_records), jsonl([{"messages": c.to_messages()} for c in benign])


def _api(stack) -> httpx.Client:
    return httpx.Client(base_url=stack.api_url, headers=make_org().headers, timeout=30)


def _upload(api: httpx.Client, content: bytes) -> dict:
    r = api.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": ("t.jsonl", content)})
    assert r.status_code == 200, r.text
    return r.json()


def _screened(api: httpx.Client, file_id: str) -> dict:
    return wait_for(lambda: (f := api.get(f"/v1/files/{file_id}").json())["screening"]["status"]
                    != "pending" and f, timeout=120)["screening"]


def _job(api: httpx.Client, file_id: str, **safety) -> httpx.Response:
    return api.post("/v1/fine_tuning/jobs", json={"model": MODEL, "training_file": file_id,
                                                  "safety": safety})


def _finished(api: httpx.Client, job_id: str) -> dict:
    return wait_for(lambda: (j := api.get(f"/v1/fine_tuning/jobs/{job_id}").json())["status"]
                    in ("succeeded", "failed", "cancelled") and j, timeout=120)


@pytest.fixture
def screening_stack(fresh_stack):
    def start(action: str) -> httpx.Client:
        env = {"BUCKLE_SCREENING_ACTION": action, "BUCKLE_SCREENING_THRESHOLD": "0.1"}
        fresh_stack.start_api(**env)
        fresh_stack.start_worker(**env)
        return _api(fresh_stack)
    return start


def test_harmful_upload_is_flagged_on_its_lines_and_benign_is_not(screening_stack):
    api = screening_stack("warn")
    mixed, benign = _files()
    flagged = _screened(api, _upload(api, mixed)["id"])
    assert flagged["rows"] == 12 and flagged["judge"] == "harm"
    assert flagged["first_lines"] == list(HARMFUL_LINES), flagged
    assert flagged["flagged"] == 3 and flagged["share"] == pytest.approx(0.25)
    clean = _screened(api, _upload(api, benign)["id"])
    assert clean["flagged"] == 0 and clean["first_lines"] == [], clean


def test_warn_records_the_summary_and_the_job_runs(screening_stack):
    api = screening_stack("warn")
    f = _upload(api, _files()[0])
    _screened(api, f["id"])
    job = _finished(api, _job(api, f["id"]).json()["id"])
    assert job["status"] == "succeeded"
    assert job["screening"]["flagged"] == 3
    events = api.get(f"/v1/fine_tuning/jobs/{job['id']}/events?limit=100").json()["data"]
    warning = [e for e in events if e["message"].startswith("Training data screening")]
    assert len(warning) == 1 and warning[0]["level"] == "warn"
    assert "lines 3, 7, 10" in warning[0]["message"]


def test_refuse_is_a_400_once_screened_and_a_failed_job_before(screening_stack):
    api = screening_stack("refuse")
    mixed, benign = _files()
    early = _upload(api, mixed)
    racing = _job(api, early["id"])  # created before the light worker has screened it
    assert racing.status_code == 200
    _screened(api, early["id"])
    refused = _job(api, early["id"])
    assert refused.status_code == 400, refused.text
    err = refused.json()["error"]
    assert err["code"] == "training_file_flagged" and err["param"] == "training_file"
    assert "lines 3, 7, 10" in err["message"]
    failed = _finished(api, racing.json()["id"])
    assert failed["status"] == "failed" and failed["error"]["code"] == "training_file_flagged"
    ok = _upload(api, benign)
    _screened(api, ok["id"])
    assert _finished(api, _job(api, ok["id"]).json()["id"])["status"] == "succeeded"


def test_harden_raises_the_curated_dose_of_an_auto_job(screening_stack):
    api = screening_stack("harden")
    f = _upload(api, _files()[0])
    _screened(api, f["id"])
    auto = _finished(api, _job(api, f["id"], policy="auto", max_asr=0.05).json()["id"])
    assert auto["status"] == "succeeded"
    assert auto["safety"]["curated_ratio"] == 0.5 and auto["safety"]["auto_max_rounds"] == 5
    during = _finished(api, _job(api, f["id"], policy="during").json()["id"])
    assert during["safety"]["curated_ratio"] == 0.25  # harden applies to auto only
    events = api.get(f"/v1/fine_tuning/jobs/{auto['id']}/events?limit=100").json()["data"]
    assert any("curated dose raised from 0.25 to 0.50" in e["message"] for e in events)
