"""Releasing a finished job: the adapter's files, its reproducible archive, the result file and
the registry rows, published together or not at all."""

from __future__ import annotations

import json
import logging
import tarfile
from pathlib import Path
from typing import Any

from sqlalchemy import update

from app.core.db import session_scope
from app.ids import new_id
from app.models import Adapter, FineTuningJob, utcnow
from app.services import jobs
from app.storage import get_store
from buckle.pipeline.spec import JobResult
from workers.result_files import add_result_file
from workers.workdir import work_dir_of

log = logging.getLogger("buckle.worker")


def adapter_id_for(job: FineTuningJob) -> str:
    parts = ["ft", job.model] + ([job.suffix] if job.suffix else []) + [job.id.split("-", 1)[1]]
    return ":".join(parts)


def _pack(adapter_dir: Path, report_path: str | None, dest: Path) -> None:
    """A reproducible tar.gz (sorted names, zero mtimes): same files → same sha256."""
    import gzip

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        return info

    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        for f in sorted(p for p in adapter_dir.rglob("*") if p.is_file()):
            tar.add(f, arcname=str(f.relative_to(adapter_dir)), filter=clean)
        if report_path and Path(report_path).is_file() and \
                not (adapter_dir / "safety_report.json").exists():
            tar.add(report_path, arcname="safety_report.json", filter=clean)


def release(job: FineTuningJob, result: JobResult, owner: str) -> bool:
    """Store the adapter and mark the job succeeded, atomically; False if no longer ours.

    Each call writes into a folder of its own (`adapters/<job>/<attempt>/`), and the registry
    row that publishes it is written by the same lease-guarded UPDATE that marks the job
    succeeded. A worker that lost its lease (paused, partitioned) and releases late therefore
    removes only its own attempt: never the adapter another worker already released.
    """
    store = get_store()
    adapter_id = adapter_id_for(job)
    base = f"adapters/{job.id}/{new_id('attempt')}"
    work_dir = work_dir_of(job.id)
    archive = work_dir / ".release" / "adapter.tar.gz"  # local; the store gets a copy
    _pack(Path(result.adapter_dir), result.report_path, archive)
    report = None
    if result.report_path and Path(result.report_path).is_file():
        report = json.loads(Path(result.report_path).read_text())
    csv_key = None
    try:
        store.put_tree(f"{base}/peft", Path(result.adapter_dir))
        archive_bytes, archive_sha = store.put_file(f"{base}/adapter.tar.gz", archive)
        with session_scope() as session:
            results, csv_key = add_result_file(session, store, job.org_id, job.id, work_dir)
            done = _mark_succeeded(session, job, owner, adapter_id, result, [results.id])
            if not done:
                session.rollback()
                store.delete(base)  # this attempt's files only
                store.delete(csv_key)
                return False
            _add_adapter(session, job, adapter_id, result, (archive_bytes, archive_sha), base,
                         report)
    except BaseException:
        store.delete(base)  # nothing half-released: the rows rolled back, so do the bytes
        if csv_key is not None:
            store.delete(csv_key)
        raise
    finally:
        archive.unlink(missing_ok=True)
    log.info("job %s succeeded: %s (worker %s)", job.id, adapter_id, owner)
    return True


def _mark_succeeded(session: Any, job: FineTuningJob, owner: str, adapter_id: str,
                    result: JobResult, result_files: list[str]) -> bool:
    return session.execute(
        update(FineTuningJob)
        .where(FineTuningJob.id == job.id, FineTuningJob.status == "running",
               FineTuningJob.lease_owner == owner)
        .values(status="succeeded", progress=100.0, fine_tuned_model=adapter_id,
                trained_tokens=result.trained_tokens, safety_scores=result.safety,
                result_files=result_files, finished_at=utcnow(), lease_owner=None,
                lease_expires_at=None)
        .execution_options(synchronize_session=False)).rowcount == 1


def _add_adapter(session: Any, job: FineTuningJob, adapter_id: str, result: JobResult,
                 archive: tuple[int, str], base: str, report: dict[str, Any] | None) -> None:
    """The adapter's registry row and the job's closing events (same transaction)."""
    if session.get(Adapter, adapter_id) is None:
        session.add(Adapter(
            id=adapter_id, org_id=job.org_id, job_id=job.id, base_model=job.model,
            policy=job.safety.get("policy", "during"), sha256=archive[1],
            bytes=archive[0], files_sha256=result.adapter_sha256,
            storage_key=f"{base}/peft", archive_key=f"{base}/adapter.tar.gz",
            safety_report=report, created_at=utcnow()))
    jobs.add_event(session, job.id, f"New fine-tuned model created: {adapter_id}")
    jobs.add_event(session, job.id, "Safety: " + _safety_line(result.safety),
                   type="metrics", data={"stage": "done", "safety": result.safety})
    jobs.add_event(session, job.id, "The job has successfully completed")


def _safety_line(safety: dict[str, Any]) -> str:
    def asr(which: str) -> str:
        value = (safety.get(which) or {}).get("asr")
        if isinstance(value, dict):
            value = value.get("value")
        return f"{value:.0%}" if isinstance(value, int | float) else "n/a"

    return f"attack success rate base {asr('base')} → adapter {asr('adapter')}"
