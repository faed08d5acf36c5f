"""A job's safety side by side: the base model, the organization's own unprotected run (when
there is one) and this job's adapter, with their utility. The API and the dashboard both show
this, so it is computed in one place, on read: an unprotected run that finishes after the
hardened one still appears."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import FineTuningJob
from app.services.public import scrub

METRICS = {"asr": "attack success rate", "over_refusal_rate": "over-refusal (benign)",
           "borderline_over_refusal_rate": "over-refusal (borderline)",
           "harmful_rate": "harmful replies", "keyword_asr": "keyword ASR (GCG list)"}


def policy_of(job: FineTuningJob) -> str:
    return (job.safety or {}).get("policy", "during")


def unprotected_of(session: Session, job: FineTuningJob) -> FineTuningJob | None:
    """The organization's latest succeeded `policy: none` job on the same model and training
    file: what the customer's data did without Buckle. Never another organization's."""
    if policy_of(job) == "none":
        return None
    candidates = session.scalars(
        select(FineTuningJob).where(FineTuningJob.org_id == job.org_id,
                                    FineTuningJob.model == job.model,
                                    FineTuningJob.training_file == job.training_file,
                                    FineTuningJob.status == "succeeded",
                                    FineTuningJob.id != job.id)
        .order_by(FineTuningJob.id.desc()))
    return next((c for c in candidates if policy_of(c) == "none"), None)


def _utility(scores: dict[str, Any], which: str) -> dict[str, Any] | None:
    u = (scores.get("utility") or {}).get(which)
    return {"exact_match": u.get("exact_match"), "loss": u.get("loss"), "n": u.get("n")} \
        if isinstance(u, dict) else None


def safety_comparison(session: Session, job: FineTuningJob) -> dict[str, Any]:
    """Series (base, unprotected, hardened — or adapter for an unprotected job itself) of the
    safety metrics and of utility, plus a title with no server path."""
    scores = scrub(job.safety_scores) or {}
    own = "hardened" if policy_of(job) != "none" else "adapter"
    series: dict[str, dict[str, Any]] = {"base": scores.get("base") or {}}
    utility: dict[str, Any] = {"base": _utility(scores, "base")}
    other = unprotected_of(session, job)
    if other is not None and other.safety_scores:
        other_scores = scrub(other.safety_scores) or {}
        series["unprotected"] = other_scores.get("adapter") or {}
        utility["unprotected"] = _utility(other_scores, "adapter")
    series[own] = scores.get("adapter") or {}
    utility[own] = _utility(scores, "adapter")
    n = (scores.get("adapter") or {}).get("n")
    title = (f"{job.model}, policy {policy_of(job)}: " + " vs. ".join(series)
             + (f" (n={n})" if n else ""))
    return {"job": job.id, "model": job.model, "policy": policy_of(job),
            "unprotected_job": other.id if other is not None else None, "title": title,
            "series": series, "utility": {k: v for k, v in utility.items() if v}}
