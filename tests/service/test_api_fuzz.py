"""Fuzzing the live API (uvicorn + PostgreSQL + Redis) from its own OpenAPI document.

Schemathesis generates requests for every operation, valid ones and schema-violating ones;
path parameters are real ids of a seeded organization half of the time (a job, a file, an
adapter, an evaluation), so the handlers behind the 404s are reached too. Every answer must be
a non-5xx that the document describes (status, content type, body schema, headers).
Derandomized: CI runs the same cases every time. FUZZ_EXAMPLES scales it (default 30 per
operation and mode; about 900 cases in under a minute here).
"""

from __future__ import annotations

import os

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from schemathesis import GenerationMode
from servicekit import finished_job, make_org

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))
CHECKS = [schemathesis.checks.not_a_server_error, schemathesis.checks.status_code_conformance,
          schemathesis.checks.content_type_conformance,
          schemathesis.checks.response_schema_conformance,
          schemathesis.checks.response_headers_conformance]


@pytest.fixture(scope="module")
def live(module_stack):
    # An API of its own without the request-rate limit: thousands of 429s would stop the
    # fuzzer from reaching the handlers (the limit has its own tests, test_api_quotas.py).
    url = module_stack.start_api(BUCKLE_RATE_LIMIT="")
    org = make_org()
    with httpx.Client(base_url=url, timeout=30) as api:
        ids = finished_job(api, org)
    return url, org, ids


def _fuzz(operation, mode, url: str, headers: dict, real: dict, counts: dict,
          failures: list[str]) -> None:
    """Run `EXAMPLES` generated cases of one operation in one generation mode."""

    @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None,
                         derandomize=True, suppress_health_check=list(HealthCheck),
                         phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode),
                      use_real=hypothesis.strategies.booleans())
    def run(case, use_real):
        if use_real and case.path_parameters:
            case.path_parameters = {k: real.get(k, v) for k, v in case.path_parameters.items()}
        try:
            response = case.call(base_url=url, headers=headers, timeout=30)
        except Exception as exc:  # noqa: BLE001 - a dropped connection is a failure
            failures.append(f"{operation.label} [{mode}]: {exc!r}")
            return
        counts["cases"] += 1
        counts["status"][response.status_code] = counts["status"].get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as exc:  # noqa: BLE001 - collected, reported together
            failures.append(f"{operation.label} [{mode}] {response.status_code}: "
                            f"{str(exc)[:600]}")

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        if mode != GenerationMode.NEGATIVE:
            raise
        counts["nothing_to_negate"].append(operation.label)  # e.g. GET /healthz: no inputs


def test_fuzz_every_operation_no_5xx_and_schema_conformant(live):
    url, org, ids = live
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    real = {"file_id": ids["file"], "job_id": ids["job"], "adapter_id": ids["adapter"],
            "evaluation_id": ids["evaluation"], "model_id": ids["adapter"]}
    counts: dict = {"cases": 0, "status": {}, "nothing_to_negate": []}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, url, org.headers, real, counts, failures)
    print(f"fuzzed {counts['cases']} cases; statuses {sorted(counts['status'].items())}; "
          f"no negative cases for {counts['nothing_to_negate']}")
    assert not failures, "\n\n".join(failures[:10])
    assert counts["cases"] >= 500, counts
    assert not any(s >= 500 for s in counts["status"]), counts
