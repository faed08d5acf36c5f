"""The pipeline's progress and should_cancel callbacks for one leased job, written to the registry.

Progress becomes job events (training steps throttled) and a percentage; checkpoints and curated
corpora the pipeline reports become registry rows. A database outage drops an event but never
stops training: the step log keeps every step, and unrecorded checkpoints are written with the
next event that gets through.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from app.core.config import get_settings
from app.core.db import session_scope
from app.errors import DBUnavailable
from app.ids import new_id
from app.models import Checkpoint, CuratedCorpus, FineTuningJob, utcnow
from app.services import jobs
from buckle.pipeline.spec import ProgressEvent
from workers.lease import Lease
from workers.result_files import append_step
from workers.workdir import WorkDirMirror

log = logging.getLogger("buckle.worker")


class JobReporter:
    """The pipeline's progress and should_cancel callbacks, writing to the registry."""

    def __init__(self, job_id: str, org_id: str, model: str, lease: Lease,
                 work_dir: Path, mirror: WorkDirMirror) -> None:
        s = get_settings()
        self.job_id, self.org_id, self.model, self.lease = job_id, org_id, model, lease
        self.work_dir, self.mirror = work_dir, mirror
        self.cancel_poll_s, self.throttle_s = s.cancel_poll_s, s.event_throttle_s
        self._last_check, self._cancelled = 0.0, False
        self._last_train_event = 0.0
        # checkpoints whose row could not be written (database away): written with the next
        # event that gets through, so the checkpoint list stays complete
        self._unrecorded: list[dict[str, Any]] = []

    def should_cancel(self) -> bool:
        if self._cancelled or self.lease.lost.is_set():
            return True
        now = time.monotonic()
        if now - self._last_check >= self.cancel_poll_s:
            self._last_check = now
            try:
                with session_scope() as session:
                    status = session.scalar(select(FineTuningJob.status)
                                            .where(FineTuningJob.id == self.job_id))
            except DBUnavailable:  # keep training; the lease decides who owns the job
                log.warning("job %s: database unavailable; cancellation check skipped",
                            self.job_id)
                return False
            self._cancelled = status != "running"
        return self._cancelled

    def progress(self, event: ProgressEvent) -> None:
        if event.stage == "train" and "step" in event.data:
            append_step(self.work_dir, event.data)  # every step, for the result file
        if event.stage == "checkpoint":
            self.mirror.push()  # another host can resume from here
        now = time.monotonic()
        is_train_step = event.stage == "train" and event.fraction < 1.0
        if is_train_step and now - self._last_train_event < self.throttle_s:
            return
        if event.stage == "train":
            self._last_train_event = now
        log.info("job %s [%s %.0f%%] %s", self.job_id, event.stage, event.fraction * 100,
                 event.message)
        try:
            self._store(event)
        except DBUnavailable:  # an event is dropped, the job goes on (the step log keeps steps)
            log.warning("job %s: database unavailable; event dropped: %s", self.job_id,
                        event.message)
            if event.stage == "checkpoint" and "step" in event.data:
                self._unrecorded.append(dict(event.data))

    def _store(self, event: ProgressEvent) -> None:
        with session_scope() as session:
            owned = (FineTuningJob.lease_owner == self.lease.owner)
            session.execute(update(FineTuningJob)
                            .where(FineTuningJob.id == self.job_id, owned,
                                   FineTuningJob.status == "running")
                            .values(progress=func.max(FineTuningJob.progress,
                                                      event.fraction * 100)
                                    if session.bind.dialect.name == "sqlite"
                                    else func.greatest(FineTuningJob.progress,
                                                       event.fraction * 100))
                            .execution_options(synchronize_session=False))
            data = _event_data(event)
            kind = "metrics" if event.stage == "train" and "step" in event.data else "message"
            memory = _gpu_memory_bytes() if kind == "metrics" else None
            if memory is not None:
                data["gpu_memory_bytes"] = memory
            jobs.add_event(session, self.job_id, event.message, type=kind, data=data)
            for data in [*self._unrecorded, *([event.data] if event.stage == "checkpoint"
                                              and "step" in event.data else [])]:
                self._record_checkpoint(session, data)
            if event.stage == "curate" and event.data.get("config_hash"):
                self._record_corpus(session, event.data)
        self._unrecorded.clear()  # committed

    def _record_checkpoint(self, session: Any, data: dict[str, Any]) -> None:
        step = int(data["step"])
        exists = session.scalar(select(Checkpoint.id).where(Checkpoint.job_id == self.job_id,
                                                            Checkpoint.step == step))
        if exists is None:  # a resumed job re-reports checkpoints it already has
            session.add(Checkpoint(id=new_id("ftckpt"), job_id=self.job_id, org_id=self.org_id,
                                   step=step, path=str(data.get("path", "")),
                                   metrics={"step": step, **(data.get("metrics") or {})},
                                   created_at=utcnow()))

    def _record_corpus(self, session: Any, data: dict[str, Any]) -> None:
        source, digest = str(data.get("source", "")), str(data["config_hash"])
        row = session.scalar(select(CuratedCorpus).where(
            CuratedCorpus.base_model == self.model, CuratedCorpus.source == source,
            CuratedCorpus.config_hash == digest))
        if row is None:
            row = CuratedCorpus(id=new_id("corpus"), base_model=self.model, source=source,
                                config_hash=digest, config=data.get("config"),
                                path=str(data.get("path", "")), items=data.get("items"),
                                uses=0, created_at=utcnow())
            session.add(row)
        row.uses = (row.uses or 0) + 1
        row.last_used_at = utcnow()


def _gpu_memory_bytes() -> int | None:
    """Peak GPU memory this worker process allocated, where a GPU is in use (for /metrics)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return int(torch.cuda.max_memory_allocated())


def _event_data(event: ProgressEvent) -> dict[str, Any]:
    """The pipeline's data under the job-level `stage` and `fraction`. The pipeline's own
    `stage` key (a training stage of the policy: mixed, immunize, restore…) must not shadow the
    job stage, so it is kept as `training_stage`. (Responses pass it through
    `app.services.public.scrub`: customers never read a server path.)"""
    data = dict(event.data)
    if "stage" in data:
        data["training_stage"] = data.pop("stage")
    return {"stage": event.stage, "fraction": event.fraction, **data}
