"""Real worker processes (Celery) on both stacks, with the stand-in pipeline
(tests/service/fake_pipeline.py): the job lifecycle, cancellation, a worker killed mid-job and
resumed from its checkpoint by another, several workers sharing one broker and database."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import httpx
import pytest
from servicekit import GOOD_JSONL, make_org, steps_log, wait_for

BOTH = pytest.mark.parametrize("fresh_stack", ["embedded", "production"], indirect=True)


def _submit(api: httpx.Client, **body) -> dict:
    f = api.post("/v1/files", data={"purpose": "fine-tune"},
                 files={"file": ("train.jsonl", GOOD_JSONL)}).json()
    r = api.post("/v1/fine_tuning/jobs", json={"model": "smollm2-135m-instruct",
                                                "training_file": f["id"], **body})
    assert r.status_code == 200, r.text
    return r.json()


def _job(api: httpx.Client, job_id: str) -> dict:
    return api.get(f"/v1/fine_tuning/jobs/{job_id}").json()


def _finished(api: httpx.Client, job_id: str):
    def check() -> dict | None:
        job = _job(api, job_id)
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None
    return check


def _client(stack) -> httpx.Client:
    org = make_org()
    return httpx.Client(base_url=stack.api_url, headers=org.headers, timeout=30)


def _steps(stack, job_id: str) -> list[tuple[int, int]]:
    return steps_log(Path(stack.env["BUCKLE_DATA_DIR"]) / "artifacts", job_id)


@pytest.mark.parametrize(("env", "light"), [
    ({}, "1"),  # embedded: the light worker on one thread, training keeps every core
    ({"OMP_NUM_THREADS": "2"}, None),  # an operator's choice applies to both, unchanged
    ({"BUCKLE_TORCH_THREADS": "3"}, "3"),
])
def test_buckle_up_gives_its_light_worker_one_thread_unless_told(env, light):
    from app.cli import light_worker_env

    base = {"PATH": "/usr/bin", **env}
    out = light_worker_env(base)
    assert out.get("BUCKLE_TORCH_THREADS") == light
    assert {k: v for k, v in out.items() if k != "BUCKLE_TORCH_THREADS"} == {
        k: v for k, v in base.items() if k != "BUCKLE_TORCH_THREADS"}
    assert base == {"PATH": "/usr/bin", **env}  # the caller's dict is untouched


@BOTH
def test_job_runs_to_an_adapter_with_events_checkpoints_and_scores(fresh_stack):
    fresh_stack.start_api()
    fresh_stack.start_worker()
    api = _client(fresh_stack)
    job = _submit(api, suffix="e2e", safety={"policy": "during"})
    done = wait_for(_finished(api, job["id"]), timeout=90)
    assert done["status"] == "succeeded", done
    assert done["fine_tuned_model"] == f"ft:smollm2-135m-instruct:e2e:{job['id'][6:]}"
    assert done["trained_tokens"] == 800 and done["progress"] == 100.0
    scores = done["safety_scores"]
    assert scores["base"]["asr"]["value"] == 0.5 and scores["adapter"]["asr"]["value"] == 0.1
    events = api.get(f"/v1/fine_tuning/jobs/{job['id']}/events?limit=100").json()["data"]
    messages = [e["message"] for e in events][::-1]
    assert messages[0].startswith("Validating") and messages[-1] == \
        "The job has successfully completed"
    assert any(e["type"] == "metrics" and e["data"].get("step") == 3 for e in events)
    ckpts = api.get(f"/v1/fine_tuning/jobs/{job['id']}/checkpoints").json()["data"]
    assert [c["step_number"] for c in ckpts] == [6, 4, 2]
    adapter = api.get(f"/v1/adapters/{done['fine_tuned_model']}").json()
    assert adapter["policy"] == "during" and adapter["fine_tuning_job_id"] == job["id"]
    content = api.get(f"/v1/adapters/{adapter['id']}/content")
    assert hashlib.sha256(content.content).hexdigest() == adapter["sha256"] \
        == content.headers["x-buckle-sha256"]
    with tarfile.open(fileobj=io.BytesIO(content.content)) as tar:
        names = tar.getnames()
        report = json.load(tar.extractfile("safety_report.json"))
    assert sorted(names) == ["adapter_config.json", "adapter_model.safetensors",
                             "safety_report.json"]
    assert report["policy"] == "during"
    models = [m["id"] for m in api.get("/v1/models").json()["data"]]
    assert adapter["id"] in models


def test_live_event_stream_follows_a_running_job(fresh_stack):
    fresh_stack.start_api()
    fresh_stack.start_worker()
    api = _client(fresh_stack)
    job = _submit(api)
    with api.stream("GET", f"/v1/fine_tuning/jobs/{job['id']}/events",
                    headers={"Accept": "text/event-stream"}, timeout=90) as r:
        data = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    messages = [json.loads(d)["message"] for d in data[:-1]]
    assert "Fine-tuning job started" in messages
    assert messages[-1] == "The job has successfully completed"


@BOTH
def test_cancelling_a_running_job_stops_the_worker(fresh_stack):
    fresh_stack.start_api()
    fresh_stack.start_worker(FAKE_STEPS="200", FAKE_STEP_S="0.1")
    api = _client(fresh_stack)
    job = _submit(api)
    wait_for(lambda: len(_steps(fresh_stack, job["id"])) >= 3, timeout=60)
    assert api.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    wait_for(lambda: any("Worker stopped" in e["message"] for e in api.get(
        f"/v1/fine_tuning/jobs/{job['id']}/events").json()["data"]), timeout=30)
    ran = len(_steps(fresh_stack, job["id"]))
    assert ran < 200
    final = _job(api, job["id"])
    assert final["status"] == "cancelled" and final["fine_tuned_model"] is None


@BOTH
def test_killed_worker_is_resumed_from_its_checkpoint_by_another(fresh_stack):
    fresh_stack.start_api()
    slow = {"FAKE_STEPS": "12", "FAKE_STEP_S": "0.3", "FAKE_CKPT_EVERY": "3"}
    first = fresh_stack.start_worker(name="first", **slow)
    api = _client(fresh_stack)
    job = _submit(api)
    wait_for(lambda: len(_steps(fresh_stack, job["id"])) >= 5, timeout=60)
    fresh_stack.kill(first)
    before = _steps(fresh_stack, job["id"])
    assert _job(api, job["id"])["status"] == "running"
    fresh_stack.start_worker(name="second", **slow)
    done = wait_for(_finished(api, job["id"]), timeout=90)
    assert done["status"] == "succeeded", done
    steps = _steps(fresh_stack, job["id"])
    first_pid = steps[0][0]
    resumed = [s for pid, s in steps if pid != first_pid]
    last_ckpt = max(s for _, s in before if s % 3 == 0)
    assert resumed[0] == last_ckpt + 1, (before, steps)  # resumed, not restarted
    assert resumed[-1] == 12 and sorted(set(resumed)) == resumed  # each step once per run
    ckpts = api.get(f"/v1/fine_tuning/jobs/{job['id']}/checkpoints").json()["data"]
    assert [c["step_number"] for c in ckpts] == [12, 9, 6, 3]
    events = [e["message"] for e in api.get(
        f"/v1/fine_tuning/jobs/{job['id']}/events?limit=100").json()["data"]]
    assert any("resumed the job from its last checkpoint (attempt 2)" in m for m in events)
    waiting = [i for i, m in enumerate(events) if "waiting for a worker to resume" in m]
    resumed_at = next(i for i, m in enumerate(events) if "resumed the job" in m)
    assert waiting and waiting[-1] > resumed_at  # newest first: it said so before the resume
    assert events.count("The job has successfully completed") == 1


def test_several_workers_share_one_broker_and_database(fresh_stack):
    fresh_stack.start_api()
    for i in range(2):
        fresh_stack.start_worker(name=f"w{i}", FAKE_STEPS="4", FAKE_STEP_S="0.2")
    api = _client(fresh_stack)
    jobs = [_submit(api) for _ in range(4)]
    done = [wait_for(_finished(api, j["id"]), timeout=120) for j in jobs]
    assert all(d["status"] == "succeeded" for d in done)
    pids = {_steps(fresh_stack, j["id"])[0][0] for j in jobs}
    assert len(pids) == 2  # both workers trained
    for j in jobs:  # and no job ran twice
        assert [s for _, s in _steps(fresh_stack, j["id"])] == [1, 2, 3, 4]


@pytest.mark.parametrize("fresh_stack", ["embedded"], indirect=True)
def test_worker_gives_each_pool_process_its_torch_threads(fresh_stack):
    fresh_stack.start_api()
    fresh_stack.start_worker(BUCKLE_TORCH_THREADS="1", OMP_NUM_THREADS="7")
    api = _client(fresh_stack)
    job = _submit(api)
    assert wait_for(_finished(api, job["id"]), timeout=90)["status"] == "succeeded"
    work = Path(fresh_stack.env["BUCKLE_DATA_DIR"]) / "artifacts" / "jobs" / job["id"] / "work"
    assert json.loads((work / "worker_env.json").read_text()) == {"OMP_NUM_THREADS": "1"}
    log = next(Path(fresh_stack.env["BUCKLE_DATA_DIR"]).glob("worker-w.log")).read_text()
    assert "torch threads per worker process: 1" in log


@pytest.mark.parametrize(("explicit", "env", "cpus", "concurrency", "expected"), [
    (3, "7", 16, 2, 3),  # BUCKLE_TORCH_THREADS wins
    (None, "7", 16, 2, 7),  # then the operator's OMP_NUM_THREADS
    (None, None, 16, 4, 4),  # else an equal share of the cores
    (None, "", 2, 2, 1),
    (None, "0", 2, 4, 1),  # never zero threads
    (None, "x", None, 1, 1),
])
def test_torch_threads_precedence(explicit, env, cpus, concurrency, expected):
    from workers.tasks import torch_threads

    assert torch_threads(explicit, env, cpus, concurrency) == expected


@BOTH
def test_job_with_an_unreadable_file_fails_with_an_error_object(fresh_stack):
    from app.core.db import session_scope
    from app.models import File, FineTuningJob
    from app.storage import get_store

    fresh_stack.start_api()
    api = _client(fresh_stack)
    job = _submit(api)
    with session_scope() as session:  # the stored file went bad after upload
        key = session.get(File, job["training_file"]).storage_key
    get_store().put(key, [b"garbage\n"])
    other = _submit(api)
    with session_scope() as session:  # a row the pipeline's JobSpec refuses
        row = session.get(FineTuningJob, other["id"])
        row.hyperparameters = {**row.hyperparameters, "n_epochs": 0}
    fresh_stack.start_worker()
    done = wait_for(_finished(api, job["id"]), timeout=60)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "invalid_training_file"
    assert done["error"]["param"] == "training_file" and "line 1" in done["error"]["message"]
    refused = wait_for(_finished(api, other["id"]), timeout=60)  # failed once, not re-sent forever
    assert refused["status"] == "failed" and refused["error"]["code"] == "internal_error"
    assert "n_epochs" in refused["error"]["message"]
