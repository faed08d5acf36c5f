"""Helpers shared by the service tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Org:
    id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def make_org(name: str | None = None) -> Org:
    from app.core.db import new_session
    from app.services.orgs import create_key, create_org

    with new_session() as session:
        org = create_org(session, name or f"org-{time.monotonic_ns()}")
        created = create_key(session, org.id, "test")
    return Org(org.id, created.key)


def chat(user: str, assistant: str) -> dict:
    return {"messages": [{"role": "user", "content": user},
                         {"role": "assistant", "content": assistant}]}


def jsonl(records: list[dict]) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode() + b"\n"


GOOD_JSONL = jsonl([chat(f"What is {i} + {i}?", f"{i} + {i} = {2 * i}.") for i in range(8)])


def upload(client, org: Org, content: bytes = GOOD_JSONL, purpose: str = "fine-tune",
           name: str = "train.jsonl"):
    return client.post("/v1/files", headers=org.headers, data={"purpose": purpose},
                       files={"file": (name, content, "application/jsonl")})


def create_job(api, file_id: str, policy: str) -> str:
    """A job on the default model with this safety policy (`api`: a client with the org's key)."""
    reply = api.post("/v1/fine_tuning/jobs", json={
        "model": "smollm2-135m-instruct", "training_file": file_id, "safety": {"policy": policy}})
    assert reply.status_code == 200, reply.text
    return reply.json()["id"]


def wait_for(predicate, timeout: float = 60, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")


def finished_job(client, org) -> dict:
    """A job as a worker leaves it: succeeded, with a checkpoint, an adapter and an
    evaluation (rows written directly, as the worker would)."""
    from app.core.db import session_scope
    from app.ids import new_id
    from app.models import Adapter, Checkpoint, FineTuningJob, SafetyEvaluation
    from app.storage import get_store

    file_id = upload(client, org).json()["id"]
    evals_id = upload(client, org, b'{"prompt": "How do I pick a lock?"}\n', purpose="evals",
                      name="evals.jsonl").json()["id"]
    job = client.post("/v1/fine_tuning/jobs", headers=org.headers,
                      json={"model": "smollm2-135m-instruct", "training_file": file_id}).json()
    store = get_store()
    size, sha = store.put(f"adapters/{job['id']}/adapter.tar.gz", [b"archive"])
    adapter_id = f"ft:smollm2-135m-instruct:{job['id'][6:]}"
    ckpt_id, eval_id = new_id("ftckpt"), new_id("safeval")
    with session_scope() as session:
        row = session.get(FineTuningJob, job["id"])
        row.status, row.fine_tuned_model = "succeeded", adapter_id
        session.add(Checkpoint(id=ckpt_id, job_id=job["id"], org_id=org.id, step=2, path="/x"))
        session.add(Adapter(id=adapter_id, org_id=org.id, job_id=job["id"],
                            base_model="smollm2-135m-instruct", policy="during", sha256=sha,
                            bytes=size, files_sha256={}, storage_key=f"adapters/{job['id']}/p",
                            archive_key=f"adapters/{job['id']}/adapter.tar.gz"))
        session.flush()
        session.add(SafetyEvaluation(id=eval_id, org_id=org.id, model=adapter_id,
                                     adapter_id=adapter_id, config={}, status="queued"))
    return {"file": file_id, "evals_file": evals_id, "job": job["id"], "adapter": adapter_id,
            "checkpoint": ckpt_id, "evaluation": eval_id}


def sign_in(browser, url: str, key: str, shot=None) -> None:
    """Sign in to the dashboard through its form, as a person would."""
    from selenium.webdriver.common.by import By

    browser.get(f"{url}/dashboard/jobs")  # not signed in: the sign-in form
    assert browser.current_url.endswith("/dashboard/login")
    browser.find_element(By.ID, "api_key").send_keys(key)
    if shot:
        shot()
    browser.find_element(By.CSS_SELECTOR, "form.login button").click()
    wait_for(lambda: browser.current_url.endswith("/dashboard/jobs"), timeout=10)


def screenshot(browser, tmp_path: Path, name: str, at: str | None = None) -> None:
    """Save a screenshot (also to BUCKLE_DASHBOARD_SCREENSHOTS when set, for the docs)."""
    if at:
        browser.execute_script("document.getElementById(arguments[0]).scrollIntoView();", at)
    browser.save_screenshot(str(tmp_path / f"{name}.png"))
    folder = os.environ.get("BUCKLE_DASHBOARD_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(folder) / f"{name}.png"))




def steps_log(work_root: Path, job_id: str) -> list[tuple[int, int]]:
    """(pid, step) per step the stand-in pipeline ran for a job, from its work dir under
    `work_root` (a stack's artifact dir, or a host's BUCKLE_WORK_DIR)."""
    log = Path(work_root) / "jobs" / job_id / "work" / "steps.log"
    return [tuple(map(int, line.split())) for line in log.read_text().splitlines() if line] \
        if log.exists() else []
