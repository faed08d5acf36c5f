"""What a training file's screening means for a job: the policy behind `BUCKLE_SCREENING_*`.

`warn` (default) records the summary and a warning event; `refuse` fails the job (a 400 at
creation when the file was already screened, else a failed job at validation); `harden` raises
the curated dose of an `auto` job (its `during` mix gets twice the curated share, at most 0.5,
and two more restore rounds). The summary itself comes from `buckle.evaluation.screening`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.core.config import Settings
from app.errors import APIError

HARDEN_MAX_RATIO = 0.5


@dataclass(frozen=True)
class Outcome:
    level: str  # info | warn | error
    message: str
    refuse: bool = False
    safety: dict[str, Any] | None = None  # the job's new safety block (harden), or None


def flagged(summary: dict[str, Any] | None, settings: Settings) -> bool:
    return bool(summary and summary.get("status") == "done" and summary.get("flagged")
                and summary.get("share", 0.0) > settings.screening_threshold)


def describe(summary: dict[str, Any]) -> str:
    lines = summary.get("first_lines") or []
    where = f" (lines {', '.join(map(str, lines[:10]))}{'…' if len(lines) > 10 else ''})" \
        if lines else ""
    return (f"{summary['flagged']} of {summary['rows']} rows ({summary['share']:.1%}) look like "
            f"harmful compliance to the {summary['judge']} judge{where}")


def outcome(summary: dict[str, Any], safety: dict[str, Any], settings: Settings) -> Outcome:
    """What the job does about its training file's screening summary."""
    if summary.get("status") != "done":
        return Outcome("warn", "Training data screening did not run: "
                               f"{summary.get('error', 'unknown error')}")
    text = "Training data screening: " + describe(summary)
    if not flagged(summary, settings):
        return Outcome("warn" if summary.get("flagged") else "info", text)
    action = settings.screening_action
    limit = f"over the {settings.screening_threshold:.0%} threshold"
    if action == "refuse":
        return Outcome("error", f"{text}, {limit}: the job is refused "
                                "(BUCKLE_SCREENING_ACTION=refuse)", refuse=True)
    if action == "harden" and safety.get("policy") == "auto":
        ratio = float(safety.get("curated_ratio", 0.25))
        raised = min(HARDEN_MAX_RATIO, max(ratio, 2 * ratio))
        rounds = min(20, int(safety.get("auto_max_rounds", 3)) + 2)
        new = {**safety, "curated_ratio": raised, "auto_max_rounds": rounds}
        return Outcome("warn", f"{text}, {limit}: curated dose raised from {ratio:.2f} to "
                               f"{raised:.2f} of the mix and restore rounds to {rounds} "
                               "(BUCKLE_SCREENING_ACTION=harden)", safety=new)
    note = " (harden applies to the auto policy only)" if action == "harden" else ""
    return Outcome("warn", f"{text}, {limit}{note}")


def refuse_at_creation(summary: dict[str, Any] | None, settings: Settings) -> None:
    """400 when the policy is `refuse` and the file is already known to be over the line."""
    if settings.screening_action == "refuse" and flagged(summary, settings):
        raise APIError(400, "The training file was refused by screening: " + describe(summary)
                       + f", over the {settings.screening_threshold:.0%} threshold. Remove "
                         "those rows, or ask the operator about BUCKLE_SCREENING_ACTION.",
                       code="training_file_flagged", param="training_file")
