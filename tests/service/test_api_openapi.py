"""The OpenAPI document is a contract: its examples are valid requests and responses, the
errors it lists are the ones the API gives, and the API's `safety` schema cannot drift from
the library's `SafetySpec`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema_rs

_METHODS = ("get", "post", "put", "patch", "delete")


def _resolve(spec: dict, node: Any) -> Any:
    """`node` with every local $ref inlined (the document has no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            return _resolve(spec, spec["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]])
        return {k: _resolve(spec, v) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(spec, v) for v in node]
    return node


def _examples(spec: dict) -> Iterator[tuple[str, dict, Any]]:
    """(where, schema, example) for every example the document gives."""
    for name, schema in spec["components"]["schemas"].items():
        for i, example in enumerate(schema.get("examples", [])):
            yield f"components.{name}[{i}]", schema, example
        for prop, sub in schema.get("properties", {}).items():
            for i, example in enumerate(sub.get("examples", [])):
                yield f"components.{name}.{prop}[{i}]", sub, example
    for path, item in spec["paths"].items():
        for method in _METHODS:
            op = item.get(method)
            for media in (op or {}).get("requestBody", {}).get("content", {}).values():
                for key, ex in media.get("examples", {}).items():
                    yield f"{method} {path} {key}", media["schema"], ex.get("value")


def test_every_example_validates_against_its_schema(client):
    spec = client.get("/openapi.json").json()
    checked = 0
    for where, schema, example in _examples(spec):
        validator = jsonschema_rs.validator_for(_resolve(spec, schema))
        errors = [e.message for e in validator.iter_errors(example)]
        assert not errors, (where, errors)
        checked += 1
    assert checked >= 4


def test_request_examples_are_accepted_by_the_api(client, org):
    """The create examples name a file and a model; with real ids of the caller's own they must
    be accepted as they are (the schema alone cannot prove that)."""
    from servicekit import upload

    spec = client.get("/openapi.json").json()["components"]["schemas"]
    file_id = upload(client, org).json()["id"]
    job = dict(spec["JobCreate"]["examples"][0], training_file=file_id)
    r = client.post("/v1/fine_tuning/jobs", headers=org.headers, json=job)
    assert r.status_code == 200, r.text
    r = client.post("/v1/safety/evaluations", headers=org.headers,
                    json=spec["EvaluationCreate"]["examples"][0])
    assert r.status_code == 200, r.text


def test_every_operation_documents_its_errors_in_the_error_envelope(client):
    spec = client.get("/openapi.json").json()
    for path, item in spec["paths"].items():
        for method in _METHODS:
            if method not in item:
                continue
            responses = item[method]["responses"]
            assert "422" not in responses, (method, path)  # Buckle answers 400, as OpenAI does
            if path.startswith("/v1/"):
                assert {"400", "401", "429"} <= set(responses), (method, path)
                assert "Retry-After" in responses["429"].get("headers", {}), (method, path)
                if "{" in path:
                    assert "404" in responses, (method, path)
                for status, answer in responses.items():
                    if status.startswith(("4", "5")):
                        ref = answer["content"]["application/json"]["schema"]["$ref"]
                        assert ref.endswith("/ErrorResponse"), (method, path, status)


def test_api_safety_schema_has_exactly_the_library_fields():
    from app.schemas.safety import CurationIn, CurationOverrides, SafetyIn
    from buckle.curation.config import CurationConfig
    from buckle.pipeline.spec import CurationSpec, SafetySpec

    assert set(SafetyIn.model_fields) == set(SafetySpec.model_fields)
    assert set(CurationIn.model_fields) == set(CurationSpec.model_fields)
    assert set(CurationOverrides.model_fields) <= set(CurationConfig.model_fields)
    # and what the API stores is a valid library spec once ids are resolved
    SafetySpec(**SafetyIn().model_dump(mode="json"))
