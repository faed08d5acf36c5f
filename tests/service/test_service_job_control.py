"""The rest of the OpenAI fine-tuning surface, driven by the official `openai` client against a
live API and real Celery workers (stand-in pipeline, tests/service/fake_pipeline.py): pause and
resume from the last checkpoint, the step-metrics result file, `estimated_finish`, deleting a
fine-tune, and cursor pagination on the adapter, model and evaluation lists."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import httpx
import openai
import pytest
from servicekit import GOOD_JSONL, make_org, steps_log, wait_for

BOTH = pytest.mark.parametrize("fresh_stack", ["embedded", "production"], indirect=True)
# train events are stored at most every 5 s here: the result file must still list every step
SLOW = {"FAKE_STEPS": "24", "FAKE_STEP_S": "0.25", "FAKE_CKPT_EVERY": "3",
        "BUCKLE_EVENT_THROTTLE_S": "5"}


def _sdk(stack, org) -> openai.OpenAI:
    return openai.OpenAI(api_key=org.key, base_url=stack.api_url + "/v1", max_retries=0)


def _upload(sdk: openai.OpenAI, tmp_path: Path) -> str:
    path = tmp_path / "train.jsonl"
    path.write_bytes(GOOD_JSONL)
    with open(path, "rb") as f:
        return sdk.files.create(file=f, purpose="fine-tune").id


def _steps(stack, job_id: str) -> list[tuple[int, int]]:
    return steps_log(Path(stack.env["BUCKLE_DATA_DIR"]) / "artifacts", job_id)


def _messages(sdk: openai.OpenAI, job_id: str) -> list[str]:
    return [e.message for e in sdk.fine_tuning.jobs.list_events(job_id, limit=200).data]


def _finished(sdk: openai.OpenAI, job_id: str):
    def check():
        job = sdk.fine_tuning.jobs.retrieve(job_id)
        return job if job.status in ("succeeded", "failed", "cancelled") else None
    return check


@BOTH
def test_pause_and_resume_continue_from_the_last_checkpoint(fresh_stack, tmp_path):
    fresh_stack.start_api()
    fresh_stack.start_worker(**SLOW)
    sdk = _sdk(fresh_stack, make_org())
    job = sdk.fine_tuning.jobs.create(model="smollm2-135m-instruct",
                                      training_file=_upload(sdk, tmp_path))
    wait_for(lambda: len(_steps(fresh_stack, job.id)) >= 5, timeout=60)
    running = sdk.fine_tuning.jobs.retrieve(job.id)
    assert running.status == "running" and running.estimated_finish > time.time() - 5
    assert sdk.fine_tuning.jobs.pause(job.id).status == "paused"
    wait_for(lambda: any("Worker stopped: the job is paused" in m
                         for m in _messages(sdk, job.id)), timeout=30)
    stopped = len(_steps(fresh_stack, job.id))
    time.sleep(1.5)  # six step-times: a worker still training would have logged more
    assert len(_steps(fresh_stack, job.id)) == stopped < 24
    paused = sdk.fine_tuning.jobs.retrieve(job.id)
    assert paused.status == "paused" and paused.estimated_finish is None
    assert sdk.fine_tuning.jobs.pause(job.id).status == "paused"  # idempotent
    assert sdk.fine_tuning.jobs.resume(job.id).status == "queued"
    done = wait_for(_finished(sdk, job.id), timeout=90)
    assert done.status == "succeeded", done
    steps = [s for _, s in _steps(fresh_stack, job.id)]
    before, after = steps[:stopped], steps[stopped:]
    assert after[0] == max(s for s in before if s % 3 == 0) + 1, steps  # resumed, not restarted
    assert after[-1] == 24 and sorted(set(after)) == after
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.fine_tuning.jobs.resume(job.id)
    assert bad.value.code == "job_not_resumable"
    with pytest.raises(openai.BadRequestError):
        sdk.fine_tuning.jobs.pause(job.id)

    # the step-metrics result file, as OpenAI attaches it
    assert len(done.result_files) == 1
    result = sdk.files.retrieve(done.result_files[0])
    assert result.purpose == "fine-tune-results" and result.filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(sdk.files.content(result.id).text)))
    assert [int(r["step"]) for r in rows] == list(range(1, 25))  # each step once, resumed or not
    assert [int(r["stage_step"]) for r in rows] == list(range(1, 25))
    assert float(rows[-1]["train_loss"]) == pytest.approx(1 / 24, rel=1e-4)


def test_a_fine_tune_is_deleted_with_its_files_and_lists_paginate(fresh_stack, tmp_path):
    fresh_stack.start_api()
    fresh_stack.start_worker(FAKE_STEPS="2", FAKE_STEP_S="0.05")
    org, other = make_org(), make_org()
    sdk, theirs = _sdk(fresh_stack, org), _sdk(fresh_stack, other)
    file_id = _upload(sdk, tmp_path)
    jobs = [sdk.fine_tuning.jobs.create(model="smollm2-135m-instruct", training_file=file_id)
            for _ in range(3)]
    done = [wait_for(_finished(sdk, j.id), timeout=90) for j in jobs]
    assert all(j.status == "succeeded" for j in done)
    ids = [j.fine_tuned_model for j in done][::-1]  # newest first
    api = httpx.Client(base_url=fresh_stack.api_url, headers=org.headers, timeout=30)

    first = api.get("/v1/adapters", params={"limit": 2}).json()
    assert [a["id"] for a in first["data"]] == ids[:2] and first["has_more"]
    assert first["last_id"] == ids[1]
    rest = api.get("/v1/adapters", params={"limit": 2, "after": first["last_id"]}).json()
    assert [a["id"] for a in rest["data"]] == ids[2:] and not rest["has_more"]
    models = api.get("/v1/models", params={"limit": 1}).json()
    assert len(models["data"]) == 1 and models["has_more"]
    every = [m.id for m in sdk.models.list()]
    assert every[-3:] == ids
    evals = api.get("/v1/safety/evaluations", params={"limit": 5}).json()
    assert evals["data"] == [] and not evals["has_more"]

    gone = ids[0]
    with pytest.raises(openai.NotFoundError):
        theirs.models.delete(gone)  # another organization's fine-tune answers 404
    with pytest.raises(openai.PermissionDeniedError):
        sdk.models.delete("smollm2-135m-instruct")
    adapter = api.get(f"/v1/adapters/{gone}").json()
    store = Path(fresh_stack.env["BUCKLE_DATA_DIR"]) / "artifacts" / "adapters"
    folder = store / adapter["fine_tuning_job_id"]
    assert len(list(folder.rglob("adapter.tar.gz"))) == 1
    deleted = sdk.models.delete(gone)
    assert deleted.id == gone and deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve(gone)
    assert api.get(f"/v1/adapters/{gone}").status_code == 404
    assert api.get(f"/v1/adapters/{gone}/content").status_code == 404
    assert not [p for p in folder.rglob("*") if p.is_file()]  # PEFT folder and archive gone
    assert gone not in [m.id for m in sdk.models.list()]
    with pytest.raises(openai.NotFoundError):
        sdk.models.delete(gone)


def _metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            head, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                return float(value)
    return None


@pytest.mark.parametrize("fresh_stack", ["production"], indirect=True)
def test_metrics_show_queue_depth_training_speed_durations_and_live_workers(fresh_stack,
                                                                           tmp_path):
    fresh_stack.start_api()
    light = fresh_stack.start_worker(queues="default", name="light")
    sdk = _sdk(fresh_stack, make_org())
    job = sdk.fine_tuning.jobs.create(model="smollm2-135m-instruct",
                                      training_file=_upload(sdk, tmp_path))
    scrape = lambda: httpx.get(fresh_stack.api_url + "/metrics", timeout=30).text
    # validated by the light worker, then waiting: nobody consumes `train` yet
    wait_for(lambda: sdk.fine_tuning.jobs.retrieve(job.id).status == "queued", timeout=60)
    assert _metric(scrape(), "buckle_queue_depth", queue="train") == 1
    assert _metric(scrape(), "buckle_worker_up", queues="default") == 1
    fresh_stack.start_worker(queues="train", name="trainer", **SLOW)
    wait_for(lambda: len(_steps(fresh_stack, job.id)) >= 4, timeout=60)
    wait_for(lambda: _metric(scrape(), "buckle_train_step_seconds", job=job.id), timeout=30)
    text = scrape()
    assert _metric(text, "buckle_queue_depth", queue="train") == 0
    assert _metric(text, "buckle_train_tokens_per_second", job=job.id) == 400.0
    assert 0.1 < _metric(text, "buckle_train_step_seconds", job=job.id) < 5.0  # 0.25 s steps
    assert _metric(text, "buckle_worker_up", queues="train") == 1
    assert _metric(text, "buckle_gpu_memory_bytes", job=job.id) is None  # CPU: not reported
    assert wait_for(_finished(sdk, job.id), timeout=90).status == "succeeded"
    text = scrape()
    assert _metric(text, "buckle_job_duration_seconds_count", outcome="succeeded") == 1
    assert _metric(text, "buckle_job_duration_seconds_bucket", outcome="succeeded",
                   le="+Inf") == 1
    fresh_stack.kill(light)  # SIGKILL: no clean shutdown, so its heartbeat just ages
    assert _metric(scrape(), "buckle_worker_heartbeat_age_seconds") is not None
