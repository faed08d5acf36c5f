"""The official `openai` package drives a running Buckle server (PostgreSQL + Redis) unchanged,
only `base_url` differs; Buckle's safety options travel in `extra_body`."""

from __future__ import annotations

import openai
import pytest
from servicekit import GOOD_JSONL, make_org, wait_for


@pytest.fixture
def sdk(module_stack, monkeypatch):
    module_stack.apply(monkeypatch)  # this test process talks to the same database
    org = make_org()
    client = openai.OpenAI(api_key=org.key, base_url=module_stack.api_url + "/v1", max_retries=0)
    client.buckle_stack = module_stack
    return client


def _upload(sdk: openai.OpenAI, tmp_path) -> str:
    path = tmp_path / "train.jsonl"
    path.write_bytes(GOOD_JSONL)
    with open(path, "rb") as f:
        return sdk.files.create(file=f, purpose="fine-tune").id


def test_files_and_jobs_through_the_official_client(sdk, tmp_path):
    file_id = _upload(sdk, tmp_path)
    assert sdk.files.retrieve(file_id).purpose == "fine-tune"
    assert sdk.files.content(file_id).content == GOOD_JSONL
    job = sdk.fine_tuning.jobs.create(
        model="smollm2-135m-instruct", training_file=file_id, suffix="sdk", seed=3,
        hyperparameters={"n_epochs": 2, "learning_rate_multiplier": 0.5},
        extra_body={"safety": {"policy": "post", "curation": {"limit": 8}}})
    assert job.status == "validating_files" and job.seed == 3
    assert job.hyperparameters.n_epochs == 2
    assert job.model_extra["safety"]["policy"] == "post"
    got = sdk.fine_tuning.jobs.retrieve(job.id)
    assert got.id == job.id and got.training_file == file_id
    second = sdk.fine_tuning.jobs.create(model="smollm2-135m-instruct", training_file=file_id)
    page = sdk.fine_tuning.jobs.list(limit=1)
    assert [j.id for j in page.data] == [second.id] and page.has_more
    assert [j.id for j in sdk.fine_tuning.jobs.list(limit=1)] == [second.id, job.id]  # auto-pages
    events = sdk.fine_tuning.jobs.list_events(job.id, limit=10)
    assert events.data[0].message.startswith("Validating training file")
    cancelled = sdk.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    assert sdk.fine_tuning.jobs.list_events(job.id).data[0].message.startswith(
        "Fine-tuning job cancelled")
    models = [m.id for m in sdk.models.list()]
    assert "smollm2-135m-instruct" in models


def test_idempotency_key_header_through_the_sdk(sdk, tmp_path):
    file_id = _upload(sdk, tmp_path)
    a = sdk.fine_tuning.jobs.create(model="smollm2-135m-instruct", training_file=file_id,
                                    extra_headers={"Idempotency-Key": "retry-1"})
    b = sdk.fine_tuning.jobs.create(model="smollm2-135m-instruct", training_file=file_id,
                                    extra_headers={"Idempotency-Key": "retry-1"})
    assert a.id == b.id


def test_errors_become_the_sdks_exceptions(sdk, tmp_path):
    file_id = _upload(sdk, tmp_path)
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=file_id)
    assert bad.value.param == "model" and bad.value.code == "model_not_available"
    assert "not available for fine-tuning" in str(bad.value)
    with pytest.raises(openai.BadRequestError, match="safety.policy"):
        sdk.fine_tuning.jobs.create(model="smollm2-135m-instruct", training_file=file_id,
                                    extra_body={"safety": {"policy": "sometimes"}})
    with pytest.raises(openai.NotFoundError):
        sdk.fine_tuning.jobs.retrieve("ftjob-000000000000000000000000")
    other = make_org()
    theirs = openai.OpenAI(api_key=other.key, base_url=sdk.buckle_stack.api_url + "/v1",
                           max_retries=0)
    job = sdk.fine_tuning.jobs.create(model="smollm2-135m-instruct", training_file=file_id)
    with pytest.raises(openai.NotFoundError):
        theirs.fine_tuning.jobs.retrieve(job.id)
    with pytest.raises(openai.NotFoundError):
        theirs.fine_tuning.jobs.cancel(job.id)
    with pytest.raises(openai.NotFoundError):
        theirs.files.retrieve(file_id)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="bk-wrong", base_url=sdk.buckle_stack.api_url + "/v1",
                      max_retries=0).fine_tuning.jobs.list()


def test_sdk_sees_a_job_finish(sdk, tmp_path):
    sdk.buckle_stack.start_worker()
    file_id = _upload(sdk, tmp_path)
    job = sdk.fine_tuning.jobs.create(model="smollm2-135m-instruct", training_file=file_id)
    done = wait_for(lambda: (j := sdk.fine_tuning.jobs.retrieve(job.id)).status in (
        "succeeded", "failed") and j, timeout=90)
    assert done.status == "succeeded" and done.fine_tuned_model.startswith("ft:")
    checkpoints = sdk.fine_tuning.jobs.checkpoints.list(job.id)
    assert [c.step_number for c in checkpoints.data] == [6, 4, 2]
