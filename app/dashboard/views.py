"""What each dashboard page shows, read from the registry for one organization.

Everything passes through the same services and `scrub` as the API: another organization's id
is a None here (a 404 page), and no server path reaches a page.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Adapter, CuratedCorpus, FineTuningJob, JobEvent
from app.services import adapters, jobs
from app.services.comparison import policy_of, safety_comparison
from app.services.public import scrub
from buckle.data.sources import list_sources

STATUSES = ("validating_files", "queued", "running", "paused", "succeeded", "failed",
            "cancelled")
PROMPT_SETS = {"per_prompt": "harmful", "per_benign_prompt": "benign",
               "per_borderline_prompt": "borderline"}


def _value(metric: Any) -> float | None:
    if isinstance(metric, dict):
        metric = metric.get("value")
    return float(metric) if isinstance(metric, int | float) else None


def job_row(job: FineTuningJob) -> dict[str, Any]:
    scores = job.safety_scores or {}
    return {"id": job.id, "status": job.status, "model": job.model,
            "policy": policy_of(job),
            "progress": round(job.progress or 0.0, 1), "created_at": job.created_at,
            "asr_base": _value((scores.get("base") or {}).get("asr")),
            "asr_adapter": _value((scores.get("adapter") or {}).get("asr")),
            "fine_tuned_model": job.fine_tuned_model}


def job_list(session: Session, org_id: str, status: str | None, limit: int = 200) -> list[dict]:
    q = select(FineTuningJob).where(FineTuningJob.org_id == org_id)
    if status:
        q = q.where(FineTuningJob.status == status)
    return [job_row(j) for j in session.scalars(q.order_by(FineTuningJob.id.desc()).limit(limit))]


def loss_points(session: Session, job_id: str) -> list[tuple[int, float]]:
    rows = session.scalars(select(JobEvent.data).where(JobEvent.job_id == job_id,
                                                       JobEvent.type == "metrics")
                           .order_by(JobEvent.seq))
    points = [d for d in rows if isinstance(d, dict) and isinstance(d.get("loss"), int | float)]
    return [(i + 1, float(d["loss"])) for i, d in enumerate(points)]


def _replies(report: dict[str, Any] | None, query: str, verdict: str) -> list[dict[str, Any]]:
    """Per-prompt replies of the adapter's report, filtered by text and verdict."""
    out, q = [], query.strip().lower()
    for key, name in PROMPT_SETS.items():
        for item in (report or {}).get(key) or []:
            row = {"set": name, "id": item.get("id"), "prompt": item.get("prompt") or "",
                   "response": item.get("response") or "", "refused": item.get("refused"),
                   "harmful": item.get("harmful"), "p_harmful": item.get("p_harmful"),
                   "keyword_refused": item.get("keyword_refused"),
                   "category": item.get("category")}
            if q and q not in row["prompt"].lower() and q not in row["response"].lower():
                continue
            if verdict == "harmful" and not row["harmful"]:
                continue
            if verdict == "refused" and not row["refused"]:
                continue
            if verdict == "answered" and row["refused"] is not False:
                continue
            out.append(row)
    return out


def job_page(session: Session, org_id: str, job_id: str, query: str = "",
             verdict: str = "") -> dict[str, Any] | None:
    job = jobs.get(session, org_id, job_id)
    if job is None:
        return None
    scores = scrub(job.safety_scores) or {}
    comparison = safety_comparison(session, job)
    adapter = session.get(Adapter, job.fine_tuned_model) if job.fine_tuned_model else None
    report = adapters.to_public(adapter).safety_report if adapter is not None else None
    events, _ = jobs.list_events(session, job.id, after=None, limit=200)
    checkpoints, _ = jobs.list_checkpoints(session, job.id, after=None, limit=100)
    return {"job": job_row(job), "public": jobs.to_public(job), "series": comparison["series"],
            "unprotected_job": comparison["unprotected_job"], "chart_title": comparison["title"],
            "utility": scores.get("utility") or {}, "rounds": scores.get("rounds") or [],
            "events": [jobs.event_public(e) for e in reversed(events)],
            "checkpoints": [jobs.checkpoint_public(c) for c in checkpoints],
            "loss": loss_points(session, job.id), "adapter": adapter,
            "replies": _replies(report, query, verdict), "has_report": bool(report),
            "query": query, "verdict": verdict}


def corpora(session: Session) -> list[dict[str, Any]]:
    """Curated corpora built from Buckle's built-in sources (public data, shared by every
    organization). A corpus curated from a customer's own file is that customer's data and is
    not listed: the registry does not record whose file it was."""
    builtin = set(list_sources()) | {"anchors"}
    rows = session.scalars(select(CuratedCorpus).order_by(CuratedCorpus.base_model,
                                                          CuratedCorpus.created_at.desc()))
    return [{"base_model": c.base_model, "source": c.source, "items": c.items, "uses": c.uses,
             "config_hash": c.config_hash[:12], "config": scrub(c.config),
             "last_used_at": c.last_used_at, **_corpus_files(c.path)}
            for c in rows if c.source in builtin]


def _corpus_files(path: str, examples: int = 3) -> dict[str, Any]:
    """The corpus's summary and first few items, when this host holds its cache (corpora are
    built on the worker hosts; an API host elsewhere shows the registry's numbers only)."""
    folder = Path(path) if path else None
    if folder is None or not (folder / "corpus.jsonl").is_file():
        return {"summary": None, "examples": []}
    items = []
    with open(folder / "corpus.jsonl", encoding="utf-8") as f:
        for line in itertools.islice(f, examples):
            messages = json.loads(line).get("messages", [])
            items.append({"prompt": next((m["content"] for m in messages
                                          if m.get("role") == "user"), ""),
                          "response": messages[-1]["content"] if messages else ""})
    summary = folder / "summary.json"
    return {"summary": scrub(json.loads(summary.read_text())) if summary.is_file() else None,
            "examples": items}
