"""A job's events as a live Server-Sent Events stream (the API's `stream=true` and the
dashboard's job page read the same one)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio

from app.core.db import new_session
from app.models import FineTuningJob
from app.services import jobs


def _poll(job_id: str, seq: int) -> tuple[list[dict], int, bool]:
    with new_session() as session:
        events = jobs.events_since(session, job_id, seq)
        job = session.get(FineTuningJob, job_id)
        finished = job is None or jobs.is_terminal(job.status)
        out = [{"id": e.id, "data": jobs.event_public(e).model_dump_json()} for e in events]
        return out, (events[-1].seq if events else seq), finished


async def job_event_stream(job_id: str, seq: int, poll_s: float) -> AsyncIterator[dict]:
    while True:
        batch, seq, finished = await anyio.to_thread.run_sync(_poll, job_id, seq)
        for item in batch:
            yield item
        if finished and not batch:
            yield {"event": "done", "data": "[DONE]"}
            return
        if not batch:
            await anyio.sleep(poll_s)
