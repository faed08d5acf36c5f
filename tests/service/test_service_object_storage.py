"""Artifacts in an object store (a real S3-compatible server, moto's) shared by hosts that share
nothing else but PostgreSQL and Redis: the API host and each worker host get a data dir of their
own, so a file uploaded through one is trained on by another and downloaded through the first,
and a job whose worker dies resumes from its last checkpoint on a third."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import httpx
import openai
import pytest
from servicekit import GOOD_JSONL, make_org, steps_log, wait_for

from app.storage.remote import FsspecArtifactStore

_prefix = itertools.count()


@pytest.fixture
def s3(fresh_stack, s3_server, monkeypatch, tmp_path):
    """The stack's processes (and this test process) keep artifacts under their own prefix."""
    env = s3_server.env(f"svc-{next(_prefix)}")
    fresh_stack.env.update(env)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    store = FsspecArtifactStore(env["BUCKLE_STORAGE_URL"], tmp_path / "inspect",
                                endpoint_url=s3_server.endpoint_url)
    return store


def _host(tmp_path: Path, name: str) -> dict[str, str]:
    """What makes a process a separate host here: a data dir nobody else reads."""
    data = tmp_path / name
    data.mkdir()
    return {"BUCKLE_DATA_DIR": str(data)}


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".log")]


def _sdk(url: str, org) -> openai.OpenAI:
    return openai.OpenAI(api_key=org.key, base_url=url + "/v1", max_retries=0)


def _submit(sdk: openai.OpenAI, tmp_path: Path):
    (tmp_path / "train.jsonl").write_bytes(GOOD_JSONL)
    with open(tmp_path / "train.jsonl", "rb") as f:
        upload = sdk.files.create(file=f, purpose="fine-tune")
    return upload, sdk.fine_tuning.jobs.create(model="smollm2-135m-instruct",
                                               training_file=upload.id)


def _done(sdk: openai.OpenAI, job_id: str):
    def check():
        job = sdk.fine_tuning.jobs.retrieve(job_id)
        return job if job.status in ("succeeded", "failed", "cancelled") else None
    return check


def test_hosts_that_share_only_the_store_upload_train_and_download(fresh_stack, s3, s3_server,
                                                                   tmp_path):
    api_host = _host(tmp_path, "api-host")
    url = fresh_stack.start_api(**api_host)
    fresh_stack.start_worker(**_host(tmp_path, "worker-host"))
    org = make_org()
    sdk = _sdk(url, org)
    upload, job = _submit(sdk, tmp_path)
    done = wait_for(_done(sdk, job.id), timeout=90)
    assert done.status == "succeeded", done
    assert f"files/{org.id}/{upload.id}.jsonl" in s3.list("files")
    adapter_keys = s3.list(f"adapters/{job.id}")
    assert any(k.endswith("/adapter.tar.gz") for k in adapter_keys)
    assert any(k.endswith("/peft/adapter_model.safetensors") for k in adapter_keys)
    assert s3.list(f"jobs/{job.id}") == []  # the work-dir mirror is gone once released
    assert _files_under(Path(api_host["BUCKLE_DATA_DIR"])) == []  # nothing on the API's disk

    # downloads stream from the store through the API host
    assert sdk.files.content(upload.id).read() == GOOD_JSONL
    (result_id,) = done.result_files
    assert sdk.files.content(result_id).read().startswith(b"step,training_stage")
    reply = httpx.get(f"{url}/v1/adapters/{done.fine_tuned_model}/content",
                      headers=org.headers, timeout=30)
    assert reply.status_code == 200
    assert hashlib.sha256(reply.content).hexdigest() == reply.headers["x-buckle-sha256"]
    assert reply.headers["content-length"] == str(len(reply.content))

    # or by a presigned URL, where the operator lets clients reach the store
    signed = fresh_stack.start_api(BUCKLE_DOWNLOAD_PRESIGN_S="60", **_host(tmp_path, "api-2"))
    moved = httpx.get(f"{signed}/v1/adapters/{done.fine_tuned_model}/content",
                      headers=org.headers, timeout=30)
    assert moved.status_code == 307
    assert moved.headers["location"].startswith(s3_server.endpoint_url + "/")
    fetched = httpx.get(moved.headers["location"], timeout=30)  # no API key, no AWS secret
    assert fetched.content == reply.content
    assert _sdk(signed, org).files.content(upload.id).read() == GOOD_JSONL  # SDK follows it

    # another organization gets a 404, not a URL
    stranger = make_org()
    assert httpx.get(f"{signed}/v1/adapters/{done.fine_tuned_model}/content",
                     headers=stranger.headers).status_code == 404

    # deleting the fine-tune deletes its objects
    assert sdk.models.delete(done.fine_tuned_model).deleted
    assert s3.list(f"adapters/{job.id}") == []


def test_a_job_whose_worker_dies_resumes_on_another_host_from_its_checkpoint(
        fresh_stack, s3, tmp_path):
    url = fresh_stack.start_api(**_host(tmp_path, "api-host"))
    slow = {"FAKE_STEPS": "12", "FAKE_STEP_S": "0.3", "FAKE_CKPT_EVERY": "3"}
    host_b, host_c = _host(tmp_path, "host-b"), _host(tmp_path, "host-c")
    first = fresh_stack.start_worker(name="b", **slow, **host_b)
    org = make_org()
    sdk = _sdk(url, org)
    _, job = _submit(sdk, tmp_path)
    manifest = f"jobs/{job.id}/work.json"
    def mirrored() -> int:
        try:
            return json.loads(s3.read(manifest))["generation"]
        except FileNotFoundError:
            return 0

    wait_for(lambda: mirrored() >= 2, timeout=60)  # two checkpoints (steps 3 and 6) mirrored
    fresh_stack.kill(first)
    fresh_stack.start_worker(name="c", **slow, **host_c)
    done = wait_for(_done(sdk, job.id), timeout=90)
    assert done.status == "succeeded", done
    steps = steps_log(Path(host_c["BUCKLE_DATA_DIR"]) / "work", job.id)
    first_pid = steps[0][0]
    on_b = [s for pid, s in steps if pid == first_pid]  # what the mirror brought over
    on_c = [s for pid, s in steps if pid != first_pid]
    assert on_b[-1] % 3 == 0 and on_b[-1] >= 6, steps
    assert on_c[0] == on_b[-1] + 1 and on_c[-1] == 12, steps  # resumed, not restarted
    events = [e.message for e in sdk.fine_tuning.jobs.list_events(job.id, limit=100).data]
    assert any(f"Resuming from the checkpoint at step {on_b[-1]}" in m for m in events)
    assert events.count("The job has successfully completed") == 1


def test_readiness_says_when_the_object_store_is_down(fresh_stack, tmp_path):
    from app.devservers import start_s3

    own = start_s3()  # a store of this test's own, to stop
    try:
        url = fresh_stack.start_api(**own.env("ready"), **_host(tmp_path, "api-host"))
        assert httpx.get(f"{url}/readyz", timeout=30).json()["checks"]["storage"] == "ok"
        own.stop()
        reply = httpx.get(f"{url}/readyz", timeout=30)
        assert reply.status_code == 503
        assert reply.json()["checks"]["storage"] != "ok"
        assert reply.json()["checks"]["database"] == "ok"
    finally:
        own.stop()
