"""A finished job's result file: the step-metrics CSV OpenAI attaches as `result_files`.

Every optimizer step is appended to `step_metrics.jsonl` in the job's work dir as it is
reported (before the event throttle, so no step is missing; a line append costs microseconds).
A resumed job re-runs the steps after its last checkpoint and appends them again; the CSV keeps
the last report of each (training stage, step), in training order, with a global `step` column
across the policy's stages.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.ids import new_id
from app.models import File
from app.storage import ArtifactStore

PURPOSE = "fine-tune-results"
COLUMNS = ("step", "training_stage", "stage_step", "train_loss", "tokens_per_s")
STEP_LOG = "step_metrics.jsonl"


def append_step(work_dir: Path, data: dict[str, Any]) -> None:
    """Record one reported optimizer step (the pipeline's `train` event data)."""
    if "step" not in data or "loss" not in data:
        return
    row = {"stage": str(data.get("stage", "")), "step": int(data["step"]),
           "loss": float(data["loss"]), "tokens_per_s": data.get("tokens_per_s")}
    work_dir.mkdir(parents=True, exist_ok=True)
    with open(work_dir / STEP_LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def metrics_csv(work_dir: Path) -> tuple[bytes, int]:
    """(CSV bytes, rows) of the job's steps; a torn last line (a killed worker) is skipped."""
    last: dict[tuple[str, int], dict[str, Any]] = {}
    path = work_dir / STEP_LOG
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        key = (row["stage"], row["step"])
        last.pop(key, None)  # a re-run step moves to where it ran last
        last[key] = row
    order = list(last)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for i, key in enumerate(order, start=1):
        row = last[key]
        speed = row.get("tokens_per_s")
        writer.writerow([i, key[0], key[1], f"{row['loss']:.6f}",
                         "" if speed is None else f"{float(speed):.1f}"])
    return out.getvalue().encode(), len(order)


def add_result_file(session: Session, store: ArtifactStore, org_id: str, job_id: str,
                    work_dir: Path) -> tuple[File, str]:
    """Store the CSV and add its File row to `session` (not committed); returns (row, key) so
    the caller can delete the stored bytes if its transaction does not commit."""
    data, rows = metrics_csv(work_dir)
    file_id = new_id("file")
    key = f"files/{org_id}/{file_id}.csv"
    size, sha = store.put(key, [data])
    row = File(id=file_id, org_id=org_id, filename=f"{job_id}-step_metrics.csv",
               purpose=PURPOSE, bytes=size, sha256=sha, records=rows, storage_key=key)
    session.add(row)
    return row, key
