"""Fine-tuning jobs API: creation (validated, idempotent), listing, cancel, events, SSE."""

from __future__ import annotations

import json

import pytest
from servicekit import upload

MODEL = "smollm2-135m-instruct"


@pytest.fixture
def training_file(client, org) -> str:
    return upload(client, org).json()["id"]


def create(client, org, **body):
    headers = dict(org.headers)
    if "idempotency_key" in body:
        headers["Idempotency-Key"] = body.pop("idempotency_key")
    return client.post("/v1/fine_tuning/jobs", headers=headers, json=body)


def test_create_job_returns_openai_shape_with_safety_defaults(client, org, training_file):
    r = create(client, org, model=MODEL, training_file=training_file, suffix="support",
               hyperparameters={"n_epochs": 2}, metadata={"team": "a"})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["id"].startswith("ftjob-") and job["object"] == "fine_tuning.job"
    assert job["status"] == "validating_files" and job["organization_id"] == org.id
    assert job["hyperparameters"] == {"n_epochs": 2, "batch_size": 8,
                                      "learning_rate_multiplier": 1.0}
    assert job["safety"]["policy"] == "during" and job["safety"]["curated_ratio"] == 0.25
    assert job["user_provided_suffix"] == "support" and job["metadata"] == {"team": "a"}
    assert isinstance(job["seed"], int) and job["error"] is None
    # retrieve reads a Core row, not the ORM object create returns: the same document
    retrieved = client.get(f"/v1/fine_tuning/jobs/{job['id']}", headers=org.headers)
    assert retrieved.status_code == 200 and retrieved.json() == job
    events = client.get(f"/v1/fine_tuning/jobs/{job['id']}/events", headers=org.headers).json()
    assert events["data"][0]["message"].startswith("Validating training file")


def test_safety_options_are_taken(client, org, training_file):
    safety = {"policy": "auto", "curated_ratio": 0.4, "max_asr": 0.05,
              "curation": {"source": "chatterbot", "limit": 16}}
    job = create(client, org, model=MODEL, training_file=training_file, safety=safety).json()
    assert job["safety"]["policy"] == "auto" and job["safety"]["max_asr"] == 0.05
    assert job["safety"]["curation"]["limit"] == 16


def test_method_hyperparameters_are_accepted(client, org, training_file):
    method = {"type": "supervised", "supervised": {"hyperparameters": {"batch_size": 4}}}
    job = create(client, org, model=MODEL, training_file=training_file, method=method).json()
    assert job["hyperparameters"]["batch_size"] == 4


def test_idempotency_key_returns_the_first_job(client, org, training_file):
    first = create(client, org, model=MODEL, training_file=training_file, idempotency_key="k1")
    again = create(client, org, model=MODEL, training_file=training_file, idempotency_key="k1")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = create(client, org, model=MODEL, training_file=training_file, seed=5,
                   idempotency_key="k1")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    listed = client.get("/v1/fine_tuning/jobs", headers=org.headers).json()["data"]
    assert [j["id"] for j in listed] == [first.json()["id"]]


def test_same_idempotency_key_in_another_org_is_independent(client, org, other_org,
                                                            training_file):
    mine = create(client, org, model=MODEL, training_file=training_file, idempotency_key="k")
    theirs_file = upload(client, other_org).json()["id"]
    theirs = create(client, other_org, model=MODEL, training_file=theirs_file,
                    idempotency_key="k")
    assert theirs.status_code == 200 and theirs.json()["id"] != mine.json()["id"]


@pytest.mark.parametrize(("body", "param", "needle"), [
    ({"model": "gpt-99"}, "model", "not available for fine-tuning"),
    ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs", "between 1 and 50"),
    ({"hyperparameters": {"batch_size": 100000}}, "hyperparameters.batch_size", "256"),
    ({"hyperparameters": {"learning_rate_multiplier": -1}},
     "hyperparameters.learning_rate_multiplier", "> 0"),
    ({"hyperparameters": {"n_epochs": 2, "lr": 3}}, "hyperparameters.lr", "xtra"),
    ({"safety": {"policy": "yolo"}}, "safety.policy", "during"),
    ({"safety": {"curated_ratio": 1.5}}, "safety.curated_ratio", "less than 1"),
    ({"training_file": "file-doesnotexist"}, "training_file", "No such file"),
    ({"suffix": "bad suffix!"}, "suffix", "pattern"),
    # strict types: no coercion of strings or booleans
    ({"hyperparameters": {"n_epochs": "3"}}, "hyperparameters.n_epochs", "valid integer"),
    ({"hyperparameters": {"n_epochs": True}}, "hyperparameters.n_epochs", "valid integer"),
    ({"seed": "7"}, "seed", "valid integer"),
    ({"safety": {"curated_ratio": "0.5"}}, "safety.curated_ratio", "valid number"),
    # every knob bounded
    ({"safety": {"curation": {"limit": 10**9}}}, "safety.curation.limit", "2000"),
    ({"safety": {"curation": {"offset": 10**9}}}, "safety.curation.offset", "100000"),
    ({"safety": {"eval_limit": 10**9}}, "safety.eval_limit", "1000"),
    ({"safety": {"benign_limit": 10**9}}, "safety.benign_limit", "1000"),
    ({"safety": {"refusal_offset": 10**9}}, "safety.refusal_offset", "100000"),
    ({"safety": {"curation": {"overrides": {"rounds": 10**6}}}},
     "safety.curation.overrides.rounds", "10"),
    ({"safety": {"curation": {"overrides": {"beam": 10**6}}}},
     "safety.curation.overrides.beam", "8"),
    ({"safety": {"curation": {"overrides": {"rounds": 1e6}}}},
     "safety.curation.overrides.rounds", "valid integer"),
    ({"safety": {"curation": {"overrides": {"temperatures": [0.5] * 50}}}},
     "safety.curation.overrides.temperatures", "at most 8"),
    ({"safety": {"curation": {"overrides": {"max_new_tokens": 10**6}}}},
     "safety.curation.overrides.max_new_tokens", "1024"),
    ({"safety": {"curation": {"overrides": {"seed": 1}}}},
     "safety.curation.overrides.seed", "xtra"),
    ({"safety": {"curation": {"overrides": {"revision_prompt": "no placeholders"}}}},
     "safety.curation", "{query}"),
    ({"safety": {"curation": {"limit": 2000, "preset": "paper",
                              "overrides": {"rounds": 10, "beam": 8}}}},
     "safety.curation", "samples"),
    # data references: names and own ids only
    ({"safety": {"eval_prompts": "no-such-set"}}, "safety.eval_prompts", "built-in"),
    ({"safety": {"curation": {"source": "advbench"}}}, "safety.curation.source", "harmful-qa"),
    ({"safety": {"curation": {"source": "alpaca:/etc/passwd"}}}, "safety.curation.source",
     "pattern"),
    ({"safety": {"curation": {"overrides": {"reviser_model": "/root/models/x"}}}},
     "safety.curation.overrides.reviser_model", "pattern"),
    ({"safety": {"curation": {"overrides": {"reviser_model": "gpt-99"}}}},
     "safety.curation.overrides.reviser_model", "not available"),
    ({"integrations": [{}] * 17}, "integrations", "at most 16"),
])
def test_bad_requests_give_400_and_create_nothing(client, org, training_file, body, param,
                                                   needle):
    r = create(client, org, **{"model": MODEL, "training_file": training_file, **body})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and needle in err["message"], err
    assert client.get("/v1/fine_tuning/jobs", headers=org.headers).json()["data"] == []


def test_evals_file_cannot_train(client, org):
    f = upload(client, org, b'{"prompt": "hi"}\n', purpose="evals").json()["id"]
    r = create(client, org, model=MODEL, training_file=f)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_file_purpose"


def test_list_uses_cursor_pagination(client, org, training_file):
    ids = [create(client, org, model=MODEL, training_file=training_file).json()["id"]
           for _ in range(3)]
    page = client.get("/v1/fine_tuning/jobs?limit=2", headers=org.headers).json()
    assert [j["id"] for j in page["data"]] == ids[::-1][:2] and page["has_more"] is True
    rest = client.get(f"/v1/fine_tuning/jobs?limit=2&after={page['data'][-1]['id']}",
                      headers=org.headers).json()
    assert [j["id"] for j in rest["data"]] == ids[:1] and rest["has_more"] is False


def test_list_filters_by_metadata(client, org, training_file):
    a = create(client, org, model=MODEL, training_file=training_file,
               metadata={"team": "a"}).json()["id"]
    create(client, org, model=MODEL, training_file=training_file, metadata={"team": "b"})
    page = client.get("/v1/fine_tuning/jobs?metadata[team]=a", headers=org.headers).json()
    assert [j["id"] for j in page["data"]] == [a]


def test_cancel_is_immediate_and_idempotent(client, org, training_file):
    job = create(client, org, model=MODEL, training_file=training_file).json()
    r = client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=org.headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert r.json()["finished_at"] is not None
    again = client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=org.headers)
    assert again.json()["status"] == "cancelled"
    events = client.get(f"/v1/fine_tuning/jobs/{job['id']}/events", headers=org.headers)
    assert "cancelled" in events.json()["data"][0]["message"]


def test_training_file_of_an_active_job_cannot_be_deleted(client, org, training_file):
    job = create(client, org, model=MODEL, training_file=training_file).json()
    r = client.delete(f"/v1/files/{training_file}", headers=org.headers)
    assert r.status_code == 409 and job["id"] in r.json()["error"]["message"]
    client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=org.headers)
    assert client.delete(f"/v1/files/{training_file}", headers=org.headers).status_code == 200


def _add_events(job_id: str, n: int) -> None:
    from app.core.db import session_scope
    from app.services import jobs

    with session_scope() as session:
        for i in range(n):
            jobs.add_event(session, job_id, f"step {i}", type="metrics", data={"step": i})
            session.flush()


def test_events_are_paginated_newest_first(client, org, training_file):
    job = create(client, org, model=MODEL, training_file=training_file).json()
    _add_events(job["id"], 5)
    url = f"/v1/fine_tuning/jobs/{job['id']}/events"
    page = client.get(url + "?limit=3", headers=org.headers).json()
    assert [e["message"] for e in page["data"]] == ["step 4", "step 3", "step 2"]
    assert page["has_more"] is True and page["data"][0]["object"] == "fine_tuning.job.event"
    rest = client.get(url + f"?limit=3&after={page['data'][-1]['id']}", headers=org.headers)
    first = f"Validating training file: {training_file}"
    assert [e["message"] for e in rest.json()["data"]] == ["step 1", "step 0", first]
    assert rest.json()["has_more"] is False


def test_event_stream_sends_every_event_then_done(client, org, training_file):
    job = create(client, org, model=MODEL, training_file=training_file).json()
    _add_events(job["id"], 2)
    client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=org.headers)
    with client.stream("GET", f"/v1/fine_tuning/jobs/{job['id']}/events?stream=true",
                       headers=org.headers) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        data = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    messages = [json.loads(d)["message"] for d in data[:-1]]
    assert messages[0].startswith("Validating") and messages[1:3] == ["step 0", "step 1"]
    assert "cancelled" in messages[-1]


def test_checkpoints_list_is_empty_before_training(client, org, training_file):
    job = create(client, org, model=MODEL, training_file=training_file).json()
    r = client.get(f"/v1/fine_tuning/jobs/{job['id']}/checkpoints", headers=org.headers)
    assert r.json() == {"object": "list", "data": [], "has_more": False, "first_id": None,
                        "last_id": None}


def test_models_lists_base_models(client, org):
    ids = [m["id"] for m in client.get("/v1/models", headers=org.headers).json()["data"]]
    assert MODEL in ids and "qwen2.5-coder-0.5b-instruct" in ids
    r = client.get(f"/v1/models/{MODEL}", headers=org.headers)
    assert r.json()["owned_by"] == "buckle"


def test_malformed_json_names_no_field(client, org):
    r = client.post("/v1/fine_tuning/jobs", headers={**org.headers,
                                                     "Content-Type": "application/json"},
                    content=b"{not json")
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] is None and "not valid JSON" in err["message"], err


def test_metadata_filters_are_bounded(client, org):
    params = {f"metadata[k{i}]": "v" for i in range(17)}
    r = client.get("/v1/fine_tuning/jobs", headers=org.headers, params=params)
    assert r.status_code == 400 and r.json()["error"]["param"] == "metadata"
