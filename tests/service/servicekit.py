"""Helpers shared by the service tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass


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


def wait_for(predicate, timeout: float = 60, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
