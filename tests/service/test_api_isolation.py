"""Every route answers 404 for another organization's ids (and 200 for the owner's)."""

from __future__ import annotations

from servicekit import upload


def _finished_job(client, org) -> dict:
    """A job as a worker leaves it: succeeded, with a checkpoint, an adapter and an
    evaluation (rows written directly, as the worker would)."""
    from app.core.db import session_scope
    from app.ids import new_id
    from app.models import Adapter, Checkpoint, FineTuningJob, SafetyEvaluation
    from app.storage import get_store

    file_id = upload(client, org).json()["id"]
    job = client.post("/v1/fine_tuning/jobs", headers=org.headers,
                      json={"model": "smollm2-135m-instruct", "training_file": file_id}).json()
    store = get_store()
    size, sha = store.put(f"adapters/{job['id']}/adapter.tar.gz", [b"archive"])
    adapter_id = f"ft:smollm2-135m-instruct:{job['id'][6:]}"
    ckpt_id, eval_id = new_id("ftckpt"), new_id("safeval")
    with session_scope() as session:
        row = session.get(FineTuningJob, job["id"])
        row.status, row.fine_tuned_model = "succeeded", adapter_id
        session.add(Checkpoint(id=ckpt_id, job_id=job["id"], org_id=org.id, step=2, path="/x"))
        session.add(Adapter(id=adapter_id, org_id=org.id, job_id=job["id"],
                            base_model="smollm2-135m-instruct", policy="during", sha256=sha,
                            bytes=size, files_sha256={}, storage_key=f"adapters/{job['id']}/p",
                            archive_key=f"adapters/{job['id']}/adapter.tar.gz"))
        session.flush()
        session.add(SafetyEvaluation(id=eval_id, org_id=org.id, model=adapter_id,
                                     adapter_id=adapter_id, config={}, status="queued"))
    return {"file": file_id, "job": job["id"], "adapter": adapter_id, "checkpoint": ckpt_id,
            "evaluation": eval_id}


def _routes(ids: dict) -> list[tuple[str, str]]:
    j, a = ids["job"], ids["adapter"]
    return [
        ("GET", f"/v1/files/{ids['file']}"),
        ("GET", f"/v1/files/{ids['file']}/content"),
        ("GET", f"/v1/fine_tuning/jobs/{j}"),
        ("GET", f"/v1/fine_tuning/jobs/{j}/events"),
        ("GET", f"/v1/fine_tuning/jobs/{j}/events?stream=true"),
        ("GET", f"/v1/fine_tuning/jobs/{j}/checkpoints"),
        ("GET", f"/v1/adapters/{a}"),
        ("GET", f"/v1/adapters/{a}/content"),
        ("GET", f"/v1/adapters/{a}/evaluations"),
        ("GET", f"/v1/models/{a}"),
        ("GET", f"/v1/safety/evaluations/{ids['evaluation']}"),
        ("POST", f"/v1/fine_tuning/jobs/{j}/cancel"),  # succeeded: owner gets 400, not 404
        ("DELETE", f"/v1/files/{ids['file']}"),  # last: the owner's call deletes it
    ]


def test_every_route_hides_other_orgs_resources(client, org, other_org):
    theirs = _finished_job(client, other_org)
    for method, url in _routes(theirs):
        r = client.request(method, url, headers=org.headers)
        assert r.status_code == 404, (method, url, r.status_code)
        assert r.json()["error"]["message"].startswith("No such"), (url, r.json())
    for method, url in _routes(theirs):
        r = client.request(method, url, headers=other_org.headers)
        assert r.status_code in (200, 400), (method, url, r.status_code, r.text)


def test_lists_show_only_own_resources(client, org, other_org):
    theirs = _finished_job(client, other_org)
    for url in ("/v1/files", "/v1/fine_tuning/jobs", "/v1/adapters", "/v1/safety/evaluations"):
        assert client.get(url, headers=org.headers).json()["data"] == [], url
    models = [m["id"] for m in client.get("/v1/models", headers=org.headers).json()["data"]]
    assert theirs["adapter"] not in models
    own = [m["id"] for m in client.get("/v1/models", headers=other_org.headers).json()["data"]]
    assert theirs["adapter"] in own


def test_other_orgs_files_and_adapters_cannot_be_used(client, org, other_org):
    theirs = _finished_job(client, other_org)
    r = client.post("/v1/fine_tuning/jobs", headers=org.headers,
                    json={"model": "smollm2-135m-instruct", "training_file": theirs["file"]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "training_file"
    r = client.post("/v1/safety/evaluations", headers=org.headers,
                    json={"model": theirs["adapter"]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
