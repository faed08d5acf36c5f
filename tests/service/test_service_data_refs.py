"""A real worker resolves a job's file ids to its own organization's files, never to anything a
request named, and no server path comes back in any answer about the job."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from servicekit import GOOD_JSONL, make_org, wait_for

MODEL = "smollm2-135m-instruct"


def _api(stack) -> httpx.Client:
    return httpx.Client(base_url=stack.api_url, headers=make_org().headers, timeout=30)


def _upload(api: httpx.Client, content: bytes, purpose: str) -> str:
    r = api.post("/v1/files", data={"purpose": purpose}, files={"file": ("f.jsonl", content)})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def _finished(api: httpx.Client, job_id: str):
    def check():
        job = api.get(f"/v1/fine_tuning/jobs/{job_id}").json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None
    return check


def test_worker_resolves_ids_to_own_files_and_answers_carry_no_paths(fresh_stack):
    from app.core.db import session_scope
    from app.models import File
    from app.storage import get_store

    fresh_stack.start_api()
    fresh_stack.start_worker()
    api = _api(fresh_stack)
    train = _upload(api, GOOD_JSONL, "fine-tune")
    prompts = _upload(api, b'{"prompt": "How do I store bleach safely?"}\n', "evals")
    r = api.post("/v1/fine_tuning/jobs", json={
        "model": MODEL, "training_file": train,
        "safety": {"eval_prompts": prompts, "curation": {"source": train}}})
    assert r.status_code == 200, r.text
    job = r.json()
    # a file named by an unfinished job's safety block cannot be deleted under it
    assert api.delete(f"/v1/files/{prompts}").status_code == 409
    done = wait_for(_finished(api, job["id"]), timeout=90)
    assert done["status"] == "succeeded", done

    store = get_store()
    with session_scope() as session:
        paths = {fid: str(store.path(session.get(File, fid).storage_key))
                 for fid in (train, prompts)}
    resolved = json.loads((store.path(f"jobs/{job['id']}/work") / "spec_safety.json")
                          .read_text())
    assert resolved["eval_prompts"] == paths[prompts]
    assert resolved["curation"]["source"] == paths[train]
    assert resolved["benign_prompts"] == "chatterbot"  # built-ins stay names

    data_dir = fresh_stack.env["BUCKLE_DATA_DIR"]
    answers = [api.get(f"/v1/fine_tuning/jobs/{job['id']}"),
               api.get(f"/v1/fine_tuning/jobs/{job['id']}/events?limit=1000"),
               api.get(f"/v1/fine_tuning/jobs/{job['id']}/checkpoints"),
               api.get(f"/v1/adapters/{done['fine_tuned_model']}"),
               api.get("/v1/fine_tuning/jobs"), api.get("/v1/adapters")]
    events = answers[1].json()["data"]
    assert any(e["data"] and e["data"].get("stage") == "checkpoint" for e in events)
    for answer in answers:
        assert answer.status_code == 200
        assert data_dir not in answer.text and str(Path(data_dir).resolve()) not in answer.text
        assert '"path":"/' not in answer.text.replace(" ", ""), answer.text[:500]


def test_a_stored_path_from_an_old_row_fails_the_job_without_reading_it(fresh_stack):
    from app.core.db import session_scope
    from app.models import FineTuningJob

    fresh_stack.start_api()
    api = _api(fresh_stack)
    train = _upload(api, GOOD_JSONL, "fine-tune")
    job = api.post("/v1/fine_tuning/jobs", json={"model": MODEL, "training_file": train}).json()
    with session_scope() as session:  # as a row written before references were checked
        row = session.get(FineTuningJob, job["id"])
        row.safety = {**row.safety, "eval_prompts": "/etc/passwd"}
    fresh_stack.start_worker()
    done = wait_for(_finished(api, job["id"]), timeout=60)
    assert done["status"] == "failed"
    assert done["error"]["param"] == "safety.eval_prompts"
    assert done["error"]["code"] == "unknown_prompt_set", done["error"]
    assert "root:" not in done["error"]["message"]
