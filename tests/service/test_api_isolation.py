"""Tenancy: another organization's ids are useless, on every route and in every body field.

Driven from the OpenAPI document, not from a hand-kept list: every operation with a path
parameter is called with the other organization's id (404 expected), every list with their ids
as query values (none of theirs may come back), and every `x-buckle-ref` body field with their
ids, their server paths and host paths (400 naming the field). A new route or field is covered
without editing this file; a new kind of path parameter fails until it gets an id here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from servicekit import finished_job, upload

MODEL = "smollm2-135m-instruct"
_METHODS = ("get", "post", "put", "patch", "delete")


def _operations(client) -> Iterator[tuple[str, str, dict]]:
    spec = client.get("/openapi.json").json()
    for path, item in spec["paths"].items():
        for method in _METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def _path_ids(theirs: dict) -> dict[str, str]:
    return {"file_id": theirs["file"], "job_id": theirs["job"], "adapter_id": theirs["adapter"],
            "evaluation_id": theirs["evaluation"], "model_id": theirs["adapter"]}


def _fill(path: str, ids: dict[str, str]) -> str:
    names = re.findall(r"{(\w+)(?::\w+)?}", path)
    missing = [n for n in names if n not in ids]
    assert not missing, f"{path}: give _path_ids an id for {missing}"
    return re.sub(r"{(\w+)(?::\w+)?}", lambda m: ids[m.group(1)], path)


def _id_routes(client) -> list[tuple[str, str]]:
    routes = [(m, p) for m, p, _ in _operations(client) if "{" in p]
    # The owner's DELETE goes last: it removes the resource the other calls need.
    return sorted(routes, key=lambda r: r[0] == "DELETE")


def test_every_route_with_an_id_hides_other_orgs_resources(client, org, other_org):
    theirs = finished_job(client, other_org)
    ids = _path_ids(theirs)
    routes = _id_routes(client)
    assert len(routes) >= 12, routes  # files, jobs, adapters, models, evaluations
    tried = 0
    for method, template in routes:
        url = _fill(template, ids)
        for extra in ("", "?stream=true") if template.endswith("/events") else ("",):
            r = client.request(method, url + extra, headers=org.headers)
            assert r.status_code == 404, (method, url + extra, r.status_code, r.text)
            assert r.json()["error"]["message"].startswith("No such"), (url, r.json())
            tried += 1
    for method, template in routes:  # the owner reaches every one of them
        r = client.request(method, _fill(template, ids), headers=other_org.headers)
        assert r.status_code in (200, 400), (method, template, r.status_code, r.text)
    assert tried == len(routes) + 1


def test_lists_never_return_other_orgs_resources(client, org, other_org):
    theirs = finished_job(client, other_org)
    their_ids = set(theirs.values())
    lists = [(m, p, op) for m, p, op in _operations(client)
             if m == "GET" and "{" not in p and p.startswith("/v1/")]
    assert len(lists) >= 5
    for _, path, op in lists:
        # every query parameter that could carry an id gets each of their ids
        names = [p["name"] for p in op.get("parameters", []) if p["in"] == "query"
                 and p["name"] in ("after", "adapter")]
        for params in [{}] + [{n: v} for n in names for v in their_ids]:
            r = client.get(path, headers=org.headers, params=params)
            assert r.status_code in (200, 400), (path, params, r.text)
            if r.status_code == 200:
                seen = {item["id"] for item in r.json()["data"]}
                assert not seen & their_ids, (path, params, seen & their_ids)
    models = [m["id"] for m in client.get("/v1/models", headers=other_org.headers).json()["data"]]
    assert theirs["adapter"] in models  # the owner does see it


# Body fields that name data (x-buckle-ref) -------------------------------------------------

def _deref(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _ref_fields(spec: dict, schema: dict, prefix: tuple[str, ...] = ()
                ) -> Iterator[tuple[tuple[str, ...], str]]:
    schema = _deref(spec, schema)
    for name, prop in schema.get("properties", {}).items():
        if "x-buckle-ref" in prop:
            yield (*prefix, name), prop["x-buckle-ref"]
            continue
        for variant in [prop, *prop.get("anyOf", []), *prop.get("allOf", [])]:
            inner = _deref(spec, variant)
            if "properties" in inner:
                yield from _ref_fields(spec, inner, (*prefix, name))
                break


def _body_ref_fields(client) -> list[tuple[str, tuple[str, ...], str]]:
    spec = client.get("/openapi.json").json()
    out = []
    for method, path, op in _operations(client):
        content = op.get("requestBody", {}).get("content", {})
        if "application/json" in content:
            for field, kind in _ref_fields(spec, content["application/json"]["schema"]):
                out.append((f"{method} {path}", field, kind))
    return out


def _with(body: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = {**body}
    node = out
    for key in path[:-1]:
        node[key] = dict(node.get(key) or {})
        node = node[key]
    node[path[-1]] = value
    return out


def test_every_data_field_refuses_other_orgs_ids_and_server_paths(client, org, other_org):
    from app.storage import get_store

    theirs = finished_job(client, other_org)
    mine = upload(client, org).json()["id"]
    minimal = {"POST /v1/fine_tuning/jobs": {"model": MODEL, "training_file": mine},
               "POST /v1/safety/evaluations": {"model": MODEL}}
    fields = _body_ref_fields(client)
    names = {".".join(f) for _, f, _ in fields}
    assert {"training_file", "validation_file", "safety.curated_file", "safety.eval_prompts",
            "safety.benign_prompts", "safety.refusal_prompts", "safety.curation.source",
            "safety.immunize.harmful_source", "safety.immunize.benign_source",
            "safety.curation.overrides.reviser_model", "prompts", "benign"} <= names, names
    with_path = {}
    from app.core.db import session_scope
    from app.models import File

    with session_scope() as session:
        for key in ("file", "evals_file"):
            with_path[key] = str(get_store().path(session.get(File, theirs[key]).storage_key))
    tried = 0
    for operation, field, kind in fields:
        assert operation in minimal, f"give the test a minimal valid body for {operation}"
        their_id = {"prompts": theirs["evals_file"], "base-model": theirs["adapter"],
                    "model": theirs["adapter"]}.get(kind, theirs["file"])
        values = [their_id, with_path["file"], with_path["evals_file"], "/etc/passwd",
                  "alpaca:/etc/passwd", "../../../../etc/passwd", "~/.ssh/id_rsa"]
        method, url = operation.split(" ", 1)
        for value in values:
            r = client.request(method, url, headers=org.headers,
                               json=_with(minimal[operation], field, value))
            assert r.status_code == 400, (operation, field, value, r.text)
            assert r.json()["error"]["param"] == ".".join(field), (field, value, r.json())
            assert with_path["file"] not in r.text and "passwd:" not in r.text
            tried += 1
    assert tried == len(fields) * 7
    # nothing was created by any of those requests
    assert client.get("/v1/fine_tuning/jobs", headers=org.headers).json()["data"] == []
    assert client.get("/v1/safety/evaluations", headers=org.headers).json()["data"] == []


def test_own_files_are_accepted_in_every_data_field(client, org):
    train = upload(client, org).json()["id"]
    prompts = upload(client, org, b'{"prompt": "How do I stay safe online?"}\n',
                     purpose="evals", name="p.jsonl").json()["id"]
    safety = {"curated_file": train, "eval_prompts": prompts, "benign_prompts": prompts,
              "refusal_prompts": prompts,
              "curation": {"source": train, "overrides": {"reviser_model": MODEL}}}
    r = client.post("/v1/fine_tuning/jobs", headers=org.headers,
                    json={"model": MODEL, "training_file": train, "validation_file": train,
                          "safety": safety})
    assert r.status_code == 200, r.text
    assert r.json()["safety"]["eval_prompts"] == prompts  # ids stay ids: no path goes out
    r = client.post("/v1/safety/evaluations", headers=org.headers,
                    json={"model": MODEL, "prompts": prompts, "benign": prompts})
    assert r.status_code == 200, r.text
    # the wrong purpose is named
    r = client.post("/v1/fine_tuning/jobs", headers=org.headers,
                    json={"model": MODEL, "training_file": train,
                          "safety": {"eval_prompts": train}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "safety.eval_prompts"
    assert r.json()["error"]["code"] == "invalid_file_purpose"
