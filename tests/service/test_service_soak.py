"""Soak: one real job (`buckle.pipeline.run`, default model) whose Celery worker is SIGKILLed
five times at random points — four during training, one during evaluation — and restarted each
time. It must finish exactly once, list every checkpoint once and in order, and release the
very same adapter as an unkilled run of the same spec (bit-identical weights)."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import httpx
import pytest
from servicekit import make_org, wait_for
from test_service_pipeline_e2e import (
    REAL,
    TINY_SAFETY,
    _customer_file,
    _events_oldest_first,
    _wait_finished,
)

pytestmark = pytest.mark.slow
KILLS_IN_TRAINING, KILLS_IN_EVALUATION = 4, 1


def _submit(api: httpx.Client) -> dict:
    """8 customer + 3 curated rows, batch 2, 3 epochs: 18 optimizer steps, a checkpoint each."""
    f = api.post("/v1/files", data={"purpose": "fine-tune"},
                 files={"file": ("customer.jsonl", _customer_file())}).json()
    r = api.post("/v1/fine_tuning/jobs", json={
        "model": "smollm2-135m-instruct", "training_file": f["id"], "seed": 1,
        "hyperparameters": {"n_epochs": 3, "batch_size": 2}, "safety": TINY_SAFETY})
    assert r.status_code == 200, r.text
    return r.json()


def _events(api: httpx.Client, job_id: str) -> list[dict]:
    return api.get(f"/v1/fine_tuning/jobs/{job_id}/events?limit=1000").json()["data"][::-1]


def _step_reports(stack, job_id: str) -> dict[tuple[str, int], list[float]]:
    """Every loss the pipeline reported per (training stage, step), in order: a step re-run
    after a kill has several."""
    log = Path(stack.env["BUCKLE_DATA_DIR"]) / "artifacts" / "jobs" / job_id / "work" \
        / "step_metrics.jsonl"
    out: dict[tuple[str, int], list[float]] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # the torn last line of a killed worker
            continue
        out.setdefault((row["stage"], row["step"]), []).append(row["loss"])
    return out


def _first_divergence(stack, ours: str, theirs: str) -> str:
    """Where the killed job's losses first leave the reference's, and what each job's training
    runs were (fingerprint of data + config, compute dtype, corpus parts): says whether a resume
    (a step reported twice), other training data or plain arithmetic is to blame when the
    adapters differ."""
    killed, reference = _step_reports(stack, ours), _step_reports(stack, theirs)
    runs = f"reference {_runs(stack, theirs)}; killed job {_runs(stack, ours)}"
    for key, (ref, *_) in reference.items():
        if any(loss != ref for loss in killed.get(key, [None])):
            return f"first differing step {key}: reference {ref!r}, killed job " \
                   f"{killed.get(key)}; {runs}"
    return f"every step's loss matches the reference (the difference is after the last step); " \
           f"{runs}"


def _runs(stack, job_id: str) -> dict:
    """Per training stage: the fingerprints and compute dtypes its checkpoints and result
    recorded; and the corpus parts the job used (key, whether reused from the cache)."""
    work = Path(stack.env["BUCKLE_DATA_DIR"]) / "artifacts" / "jobs" / job_id / "work"
    out: dict = {}
    for stage in sorted((work / "train").glob("*")):
        seen = [json.loads(p.read_text()) for pattern in ("checkpoints/*/trainer_state.json",
                                                           "adapter/train_result.json")
                for p in stage.glob(pattern)]
        out[stage.name] = sorted({(s.get("fingerprint", "?")[:12], s.get("compute_dtype", "?"))
                                  for s in seen})
    job = work / "output" / "buckle_job.json"
    if job.is_file():
        parts = json.loads(job.read_text())["corpus"].get("parts", {})
        out["parts"] = {k: (v.get("key", "?")[:12], v.get("cached")) for k, v in parts.items()}
    return out


def _train_steps(events: list[dict]) -> int:
    return sum(e["type"] == "metrics" and e["data"].get("stage") == "train" for e in events)


@pytest.mark.parametrize("fresh_stack", ["embedded"], indirect=True)
def test_a_job_killed_five_times_finishes_once_with_the_unkilled_adapter(fresh_stack, capsys):
    env = {**REAL, "BUCKLE_CHECKPOINT_EVERY": "1"}
    rng = random.Random(7)
    fresh_stack.start_api()
    api = httpx.Client(base_url=fresh_stack.api_url, headers=make_org().headers, timeout=60)
    reference_worker = fresh_stack.start_worker(name="reference", **env)
    reference = _wait_finished(api, _submit(api)["id"])
    assert reference["status"] == "succeeded", reference
    fresh_stack.kill(reference_worker)

    job = _submit(api)
    kills, latencies = [], []
    while len(kills) < KILLS_IN_TRAINING + KILLS_IN_EVALUATION:
        worker = fresh_stack.start_worker(name=f"w{len(kills)}", **env)
        before = _events(api, job["id"])
        if len(kills) < KILLS_IN_TRAINING:
            target = _train_steps(before) + rng.randint(1, 2)
            wait_for(lambda t=target: _train_steps(_events(api, job["id"])) >= t, timeout=600,
                     interval=0.2)
            where = "training"
        else:
            seen = len(before)
            wait_for(lambda n=seen: any(e["data"] and e["data"].get("stage") == "evaluate"
                                        for e in _events(api, job["id"])[n:]),
                     timeout=600, interval=0.2)
            where = "evaluation"
        if kills:  # from the previous kill to this worker's first progress
            latencies.append(next(e["created_at"] for e in _events(api, job["id"])[len(before):]
                                  if e["type"] == "metrics" or (e["data"] or {}).get("stage")
                                  == "evaluate") - kills[-1][1])
        fresh_stack.kill(worker)
        kills.append((where, int(time.time())))
    fresh_stack.start_worker(name="last", **env)
    done = _wait_finished(api, job["id"])

    assert done["status"] == "succeeded", done
    events = _events_oldest_first(api, job["id"])
    assert sum(e["message"] == "The job has successfully completed" for e in events) == 1
    assert sum("resumed the job from its last checkpoint" in e["message"] for e in events) == 5
    steps = [c["step_number"] for c in api.get(f"/v1/fine_tuning/jobs/{job['id']}/checkpoints",
                                               params={"limit": 100}).json()["data"]][::-1]
    assert steps == list(range(1, 19)), steps  # every step once, in order, the final included
    ours = api.get(f"/v1/adapters/{done['fine_tuned_model']}").json()["files"]
    theirs = api.get(f"/v1/adapters/{reference['fine_tuned_model']}").json()["files"]
    assert ours["adapter_model.safetensors"] == theirs["adapter_model.safetensors"], \
        _first_divergence(fresh_stack, job["id"], reference["id"])
    with capsys.disabled():  # the figures the issue asks for, in every CI log
        print(f"\nsoak: {len(kills)} kills ({', '.join(w for w, _ in kills)}), 0 lost, "
              f"0 doubled, recovery latency after a kill (s): {latencies}")
