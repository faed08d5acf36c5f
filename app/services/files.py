"""Training and prompt files: validated whole before anything is stored."""

from __future__ import annotations

import logging
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import broker
from app.errors import APIError, bad_request, from_buckle, not_found
from app.ids import new_id
from app.models import JOB_ACTIVE, File, FineTuningJob
from app.schemas.refs import get_path, ref_fields
from app.schemas.safety import SafetyIn
from app.storage import ArtifactStore
from buckle.data.validation import parse_conversation_lines, parse_prompt_lines
from buckle.errors import DatasetFormatError

log = logging.getLogger("buckle.api")
PURPOSES = {"fine-tune": "chat or Alpaca training records",
            "evals": "a prompt set for POST /v1/safety/evaluations"}


def read_limited(stream: BinaryIO, max_bytes: int) -> bytes:
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise too_large(max_bytes)
    return data


def too_large(max_bytes: int) -> APIError:
    return APIError(413, f"File is larger than the limit of {max_bytes} bytes; split it or ask "
                         "the operator to raise BUCKLE_MAX_UPLOAD_BYTES.",
                    code="file_too_large", param="file")


def validate_content(data: bytes, filename: str, purpose: str) -> int:
    """Number of valid records, or a 400 listing every bad line."""
    try:
        if purpose == "fine-tune":
            return len(parse_conversation_lines(data, filename))
        return len(parse_prompt_lines(data, filename))
    except DatasetFormatError as exc:
        raise from_buckle(exc) from None


def upload(session: Session, store: ArtifactStore, org_id: str, filename: str,
           purpose: str, data: bytes) -> File:
    if purpose not in PURPOSES:
        raise bad_request(f"Invalid purpose {purpose!r}; use one of: "
                          + ", ".join(f"{p} ({d})" for p, d in PURPOSES.items()),
                          param="purpose", code="invalid_purpose")
    # a display name only: no directories, no control characters (PostgreSQL refuses NUL)
    filename = "".join(c for c in filename if c.isprintable()).replace("/", "_")[-255:] \
        or "upload.jsonl"
    records = validate_content(data, filename, purpose)
    file_id = new_id("file")
    key = f"files/{org_id}/{file_id}.jsonl"
    size, sha = store.put(key, [data])
    try:
        row = File(id=file_id, org_id=org_id, filename=filename, purpose=purpose, bytes=size,
                   sha256=sha, records=records, storage_key=key,
                   screening={"status": "pending"} if purpose == "fine-tune" else None)
        session.add(row)
        session.commit()
    except BaseException:
        session.rollback()
        store.delete(key)  # nothing stays behind a failed upload
        raise
    if purpose == "fine-tune":
        try:
            broker.submit_screening(row.id)  # light queue; a job's validation screens it if lost
        except Exception:
            log.exception("could not enqueue screening of %s", row.id)
    return row


def get(session: Session, org_id: str, file_id: str, param: str | None = None) -> File:
    row = session.get(File, file_id)
    if row is None or row.org_id != org_id:
        raise not_found("file", file_id, param)
    return row


def list_(session: Session, org_id: str, *, after: str | None, limit: int,
          purpose: str | None, order: str) -> tuple[list[File], bool]:
    q = select(File).where(File.org_id == org_id)
    if purpose:
        q = q.where(File.purpose == purpose)
    if after:
        q = q.where(File.id < after if order == "desc" else File.id > after)
    q = q.order_by(File.id.desc() if order == "desc" else File.id.asc()).limit(limit + 1)
    rows = list(session.scalars(q))
    return rows[:limit], len(rows) > limit


def _jobs_using(session: Session, row: File) -> list[str]:
    """Unfinished jobs of the file's organization that name it in any data field (few: the
    active-jobs quota bounds them, so their safety blocks are read here, not indexed)."""
    jobs = session.execute(select(FineTuningJob.id, FineTuningJob.training_file,
                                  FineTuningJob.validation_file, FineTuningJob.safety).where(
        FineTuningJob.org_id == row.org_id, FineTuningJob.status.in_(JOB_ACTIVE))).all()
    refs = list(ref_fields(SafetyIn))
    return [job_id for job_id, train, valid, safety in jobs
            if row.id in (train, valid) or any(get_path(safety or {}, path) == row.id
                                                for path, _ in refs)]


def delete(session: Session, store: ArtifactStore, row: File) -> None:
    in_use = _jobs_using(session, row)
    if in_use:
        raise APIError(409, f"File {row.id} is used by job {in_use[0]}, which has not finished; "
                            "cancel the job or wait for it first.", code="file_in_use",
                       param="file_id")
    key = row.storage_key
    session.delete(row)
    session.commit()
    store.delete(key)
