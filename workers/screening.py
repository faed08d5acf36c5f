"""Screening of uploaded training files (light queue): run the harm judge over every pair and
store the summary on the file; at job validation, apply the screening policy to the job."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import update

from app.core.config import get_settings
from app.core.db import session_scope
from app.models import File, FineTuningJob
from app.services import jobs
from app.services import screening as policy
from app.storage import get_store
from buckle.evaluation.screening import screen_file_bytes

log = logging.getLogger("buckle.worker")


def _summary_of(row: File) -> dict[str, Any]:
    try:
        data = get_store().read(row.storage_key)
        summary = screen_file_bytes(data, row.filename, judge=get_settings().screening_judge)
    except Exception as exc:
        log.exception("screening of %s failed", row.id)
        return {"status": "failed", "error": type(exc).__name__}
    return {"status": "done", **summary.to_dict()}


def screen_file(file_id: str) -> dict[str, Any] | None:
    """The file's screening summary, computed once (None: no such training file)."""
    with session_scope() as session:
        row = session.get(File, file_id)
        if row is None or row.purpose != "fine-tune":
            return None
        if row.screening and row.screening.get("status") == "done":
            return row.screening
        summary = _summary_of(row)
        session.execute(update(File).where(File.id == file_id).values(screening=summary)
                        .execution_options(synchronize_session=False))
    if summary.get("status") == "done":
        log.info("file %s screened: %s of %s rows flagged", file_id, summary["flagged"],
                 summary["rows"])
    return summary


def apply_to_job(job_id: str) -> bool:
    """Record the training file's screening on the job and act on it; False = job refused."""
    with session_scope() as session:
        job = session.get(FineTuningJob, job_id)
        file_id, safety = job.training_file, dict(job.safety)
    summary = screen_file(file_id) or {"status": "failed", "error": "file not found"}
    result = policy.outcome(summary, safety, get_settings())
    with session_scope() as session:
        values: dict[str, Any] = {"screening": summary}
        if result.safety is not None:
            values["safety"] = result.safety
        session.execute(update(FineTuningJob).where(FineTuningJob.id == job_id).values(**values)
                        .execution_options(synchronize_session=False))
        jobs.add_event(session, job_id, result.message, level=result.level,
                       data={"stage": "validate", "screening": summary})
        if result.refuse:
            jobs.fail(session, job_id, "training_file_flagged", result.message,
                      "training_file", expect=("validating_files",))
            return False
    return True
