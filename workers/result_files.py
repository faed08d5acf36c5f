"""A finished job's result file: the step-metrics CSV OpenAI attaches as `result_files`.

Built from the job's own `metrics` events (one per optimizer step, written while it trained), so
it needs nothing from the work dir. A resumed job re-runs the steps after its last checkpoint;
the CSV keeps the last report of each (training stage, step), in training order, with a global
`step` column across the policy's stages.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.ids import new_id
from app.models import File, JobEvent
from app.storage import LocalArtifactStore

PURPOSE = "fine-tune-results"
COLUMNS = ("step", "training_stage", "stage_step", "train_loss", "tokens_per_s")


def metrics_csv(session: Session, job_id: str) -> tuple[bytes, int]:
    """(CSV bytes, rows) of the job's step metrics."""
    events = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id,
                                                    JobEvent.type == "metrics")
                             .order_by(JobEvent.seq))
    last: dict[tuple[str, int], dict[str, Any]] = {}
    order: list[tuple[str, int]] = []
    for e in events:
        data = e.data or {}
        if "step" not in data or "loss" not in data:
            continue
        key = (str(data.get("training_stage", "")), int(data["step"]))
        if key not in last:
            order.append(key)
        last[key] = data
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for i, key in enumerate(order, start=1):
        data = last[key]
        speed = data.get("tokens_per_s")
        writer.writerow([i, key[0], key[1], f"{float(data['loss']):.6f}",
                         "" if speed is None else f"{float(speed):.1f}"])
    return out.getvalue().encode(), len(order)


def add_result_file(session: Session, store: LocalArtifactStore, org_id: str,
                    job_id: str) -> tuple[File, str]:
    """Store the CSV and add its File row to `session` (not committed); returns (row, key) so
    the caller can delete the stored bytes if its transaction does not commit."""
    data, rows = metrics_csv(session, job_id)
    file_id = new_id("file")
    key = f"files/{org_id}/{file_id}.csv"
    size, sha = store.put(key, [data])
    row = File(id=file_id, org_id=org_id, filename=f"{job_id}-step_metrics.csv",
               purpose=PURPOSE, bytes=size, sha256=sha, records=rows, storage_key=key)
    session.add(row)
    return row, key
