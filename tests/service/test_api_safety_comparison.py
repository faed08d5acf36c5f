"""GET /v1/fine_tuning/jobs/{id}/safety_comparison (+ .svg): a hardened job beside the base model
and the organization's own unprotected run of the same file, with utility; computed on read, so
an unprotected run that finishes later still appears; never another organization's run."""

from __future__ import annotations

import httpx
from servicekit import GOOD_JSONL, create_job, make_org, wait_for


def _upload(api: httpx.Client) -> str:
    return api.post("/v1/files", files={"file": ("t.jsonl", GOOD_JSONL)},
                    data={"purpose": "fine-tune"}).json()["id"]


def _done(api: httpx.Client, job_id: str) -> None:
    wait_for(lambda: api.get(f"/v1/fine_tuning/jobs/{job_id}").json()["status"] == "succeeded",
             timeout=90)


def test_comparison_shows_base_unprotected_and_hardened_of_the_same_org(fresh_stack):
    url = fresh_stack.start_api()
    fresh_stack.start_worker()
    org, stranger = make_org(), make_org()
    api = httpx.Client(base_url=url, headers=org.headers, timeout=30)
    theirs = httpx.Client(base_url=url, headers=stranger.headers, timeout=30)
    file_id = _upload(api)

    hardened = create_job(api, file_id, "during")
    _done(api, hardened)
    alone = api.get(f"/v1/fine_tuning/jobs/{hardened}/safety_comparison").json()
    assert alone["unprotected_job"] is None and list(alone["series"]) == ["base", "hardened"]

    # another organization's unprotected run of its own copy of the file is not "the" baseline
    _done(theirs, create_job(theirs, _upload(theirs), "none"))
    unprotected = create_job(api, file_id, "none")  # finishes after the hardened job
    _done(api, unprotected)
    reply = api.get(f"/v1/fine_tuning/jobs/{hardened}/safety_comparison")
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["object"] == "fine_tuning.job.safety_comparison" and data["job"] == hardened
    assert data["unprotected_job"] == unprotected and data["policy"] == "during"
    assert list(data["series"]) == ["base", "unprotected", "hardened"]
    asr = {k: v["asr"]["value"] for k, v in data["series"].items()}
    assert asr == {"base": 0.5, "unprotected": 0.9, "hardened": 0.1}
    assert data["utility"]["hardened"]["exact_match"]["value"] == 1.0
    assert set(data["utility"]) == {"base", "unprotected", "hardened"}
    assert data["title"] == ("smollm2-135m-instruct, policy during: "
                             "base vs. unprotected vs. hardened (n=10)")

    chart = api.get(f"/v1/fine_tuning/jobs/{hardened}/safety_comparison.svg")
    assert chart.status_code == 200 and chart.headers["content-type"] == "image/svg+xml"
    assert "default-src 'none'" in chart.headers["content-security-policy"]
    svg = chart.text
    assert svg.startswith("<svg") and f"<title id=\"t\">{data['title']}</title>" in svg
    assert "unprotected 90%" in svg and "hardened 10%" in svg and "base 50%" in svg
    assert "/tmp" not in svg and fresh_stack.env["BUCKLE_DATA_DIR"] not in svg

    # the unprotected job itself has no unprotected baseline; a stranger sees neither
    own = api.get(f"/v1/fine_tuning/jobs/{unprotected}/safety_comparison").json()
    assert own["unprotected_job"] is None and list(own["series"]) == ["base", "adapter"]
    for path in ("safety_comparison", "safety_comparison.svg"):
        assert theirs.get(f"/v1/fine_tuning/jobs/{hardened}/{path}").status_code == 404
