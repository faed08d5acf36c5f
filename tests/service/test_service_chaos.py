"""Chaos: the registry's PostgreSQL, or the broker's Redis, restarted while a job trains (real
API, real Celery worker, stand-in pipeline). The job still finishes exactly once — one adapter,
one completion, every step in its result file — the API answers 503 (never 500) while a
dependency is down, and recovers by itself. Each test has its own server to restart."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from conftest import new_stack
from servicekit import GOOD_JSONL, make_org, steps_log, wait_for

from app.devservers import start_postgres, start_redis

JOB = {"FAKE_STEPS": "30", "FAKE_STEP_S": "0.2", "FAKE_CKPT_EVERY": "3"}


def _steps(stack, job_id: str) -> list[int]:
    return [step for _, step in steps_log(Path(stack.env["BUCKLE_DATA_DIR"]) / "artifacts",
                                          job_id)]


def _start_job(stack) -> tuple[httpx.Client, str]:
    api = httpx.Client(base_url=stack.api_url, headers=make_org().headers, timeout=30)
    f = api.post("/v1/files", data={"purpose": "fine-tune"},
                 files={"file": ("train.jsonl", GOOD_JSONL)}).json()
    job = api.post("/v1/fine_tuning/jobs", json={"model": "smollm2-135m-instruct",
                                                 "training_file": f["id"]}).json()
    wait_for(lambda: len(_steps(stack, job["id"])) >= 5, timeout=60)
    return api, job["id"]


def _finished_exactly_once(stack, api: httpx.Client, job_id: str) -> dict:
    def done():
        r = api.get(f"/v1/fine_tuning/jobs/{job_id}")
        return r.status_code == 200 and r.json()["status"] in ("succeeded", "failed") and r.json()
    job = wait_for(done, timeout=120)
    assert job["status"] == "succeeded", job
    events = [e["message"] for e in api.get(f"/v1/fine_tuning/jobs/{job_id}/events",
                                            params={"limit": 1000}).json()["data"]]
    assert events.count("The job has successfully completed") == 1
    assert [a["fine_tuning_job_id"] for a in api.get("/v1/adapters").json()["data"]] == [job_id]
    assert set(_steps(stack, job_id)) == set(range(1, 31))  # nothing lost
    rows = list(csv.DictReader(io.StringIO(api.get(
        f"/v1/files/{job['result_files'][0]}/content").text)))
    assert [int(r["stage_step"]) for r in rows] == list(range(1, 31))  # each step once
    checkpoints = api.get(f"/v1/fine_tuning/jobs/{job_id}/checkpoints",
                          params={"limit": 100}).json()["data"]
    assert sorted(c["step_number"] for c in checkpoints) == list(range(3, 31, 3))  # all listed
    return job


@contextmanager
def _running_job(tmp_path, monkeypatch, postgres, redis, own) -> Iterator[tuple]:
    """A production stack (API + one worker) with a job 5 steps in; `own` is the server this
    test restarts, stopped with the stack."""
    stack = new_stack("production", tmp_path, postgres, redis)
    try:
        stack.apply(monkeypatch)
        stack.start_api()
        stack.start_worker(**JOB)
        yield (stack, *_start_job(stack))
    finally:
        stack.stop()
        own.stop()


def test_postgres_restarted_mid_job(tmp_path, redis_server, monkeypatch):
    pg = start_postgres()
    with _running_job(tmp_path, monkeypatch, pg, redis_server, pg) as (stack, api, job_id):
        pg.halt("fast")
        r = api.get(f"/v1/fine_tuning/jobs/{job_id}")
        assert r.status_code == 503 and r.json()["error"]["code"] == "database_unavailable"
        assert r.headers["retry-after"] == "5"
        assert api.get("/v1/files").status_code == 503
        assert httpx.get(stack.api_url + "/readyz", timeout=30).status_code == 503
        time.sleep(4)  # longer than the job lease (3 s): the worker rides it out
        pg.start()
        wait_for(lambda: api.get(f"/v1/fine_tuning/jobs/{job_id}").status_code == 200,
                 timeout=30)  # recovers by itself
        assert httpx.get(stack.api_url + "/readyz", timeout=30).status_code == 200
        _finished_exactly_once(stack, api, job_id)


def test_redis_restarted_mid_job(tmp_path, postgres, monkeypatch):
    redis = start_redis(appendonly=True)
    with _running_job(tmp_path, monkeypatch, postgres, redis, redis) as (stack, api, job_id):
        redis.halt()
        assert api.get(f"/v1/fine_tuning/jobs/{job_id}").status_code == 200  # registry is up
        assert httpx.get(stack.api_url + "/readyz", timeout=30).status_code == 503
        f = api.post("/v1/files", data={"purpose": "fine-tune"},
                     files={"file": ("train.jsonl", GOOD_JSONL)}).json()
        r = api.post("/v1/fine_tuning/jobs", json={"model": "smollm2-135m-instruct",
                                                   "training_file": f["id"]})
        assert r.status_code == 503 and r.json()["error"]["code"] == "queue_unavailable"
        time.sleep(2)
        redis.restart(appendonly=True)
        wait_for(lambda: httpx.get(stack.api_url + "/readyz", timeout=30).status_code == 200,
                 timeout=30)
        _finished_exactly_once(stack, api, job_id)


def _job_status(api: httpx.Client, job_id: str) -> str:
    return api.get(f"/v1/fine_tuning/jobs/{job_id}").json()["status"]


def test_a_stale_worker_never_touches_the_adapter_another_worker_released(tmp_path, postgres,
                                                                         redis_server,
                                                                         monkeypatch):
    """Worker A finishes training, then stalls (SIGSTOP) past its lease before releasing; B
    takes the job over and releases it; A wakes up and tries to release too."""
    stack = new_stack("production", tmp_path, postgres, redis_server)
    try:
        stack.apply(monkeypatch)
        stack.start_api()
        a = stack.start_worker(name="a", FAKE_STEPS="4", FAKE_STEP_S="0.1",
                               FAKE_DONE_SLEEP_S="8")
        api = httpx.Client(base_url=stack.api_url, headers=make_org().headers, timeout=30)
        f = api.post("/v1/files", data={"purpose": "fine-tune"},
                     files={"file": ("train.jsonl", GOOD_JSONL)}).json()
        job_id = api.post("/v1/fine_tuning/jobs", json={"model": "smollm2-135m-instruct",
                                                        "training_file": f["id"]}).json()["id"]
        wait_for(lambda: any(e["message"] == "Adapter saved" for e in api.get(
            f"/v1/fine_tuning/jobs/{job_id}/events").json()["data"]), timeout=60)
        os.killpg(a.pid, signal.SIGSTOP)  # A holds a finished adapter and stops answering
        stack.start_worker(name="b", FAKE_STEPS="4", FAKE_STEP_S="0.1")
        wait_for(lambda: _job_status(api, job_id) == "succeeded", timeout=60)
        job = api.get(f"/v1/fine_tuning/jobs/{job_id}").json()
        adapter = api.get(f"/v1/adapters/{job['fine_tuned_model']}").json()
        archive = api.get(f"/v1/adapters/{adapter['id']}/content").content
        os.killpg(a.pid, signal.SIGCONT)  # A wakes up and hands its result back, too late
        log = Path(stack.env["BUCKLE_DATA_DIR"]) / "worker-a.log"
        wait_for(lambda: "adapter discarded" in log.read_text(), timeout=60)
        assert api.get(f"/v1/adapters/{adapter['id']}").json() == adapter  # registry untouched
        again = api.get(f"/v1/adapters/{adapter['id']}/content")
        assert again.status_code == 200 and again.content == archive  # files untouched
        assert hashlib.sha256(archive).hexdigest() == adapter["sha256"]
        attempts = list((Path(stack.env["BUCKLE_DATA_DIR"]) / "artifacts" / "adapters"
                         / job_id).iterdir())
        assert len(attempts) == 1  # A removed its own attempt, and only that
        assert api.get(f"/v1/fine_tuning/jobs/{job_id}").json() == job
    finally:
        stack.stop()
