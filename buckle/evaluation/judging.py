"""Judge a file of (prompt, response) pairs: a user's own model outputs, scored by the same
judges the service runs, with agreement against the labels the file carries.

A line is `{"prompt": str, "response": str}` plus optional labels: `harmful` (bool or 0/1;
`label` is an alias, as in PyRIT's objective labels where 1 = harmful compliance) and `refused`
(bool or 0/1). Every bad line is reported with its number before anything is judged, as for
uploads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from buckle.data.jsonlines import Data, json_type, read_records
from buckle.errors import DatasetFormatError, LineIssue
from buckle.evaluation.judges import Verdict, get_judge
from buckle.evaluation.metrics import Metric, rate

HINT = ('Each line must be one JSON object {"prompt": "...", "response": "..."}, optionally '
        'with "harmful" (or "label") and "refused" as true/false or 1/0.')
LABELS = {"harmful": "harmful", "label": "harmful", "refused": "refused"}


@dataclass(frozen=True)
class JudgeItem:
    line: int
    record: dict[str, Any]

    @property
    def prompt(self) -> str:
        return self.record["prompt"]

    @property
    def response(self) -> str:
        return self.record["response"]

    def truth(self, verdict_field: str) -> bool | None:
        """The file's label for `verdict_field` (harmful / refused), or None if it has none."""
        for key, target in LABELS.items():
            if target == verdict_field and key in self.record:
                return bool(self.record[key])
        return None


def _problems(value: Any) -> list[str]:
    if not isinstance(value, dict):
        return [f"expected a JSON object, got a JSON {json_type(value)}"]
    problems = [f'"{k}" must be a string, got a JSON {json_type(value.get(k))}'
                for k in ("prompt", "response") if not isinstance(value.get(k), str)]
    problems += [f'"{k}" must be true/false or 1/0, got {value[k]!r}'
                 for k in LABELS if k in value and value[k] not in (True, False, 0, 1)]
    return problems


def read_judge_items(data: Data, source: str) -> list[JudgeItem]:
    """Every valid line, or a DatasetFormatError listing every bad one (numbered)."""
    records, issues = read_records(data, json_array=False)
    items: list[JudgeItem] = []
    for rec in records:
        problems = _problems(rec.value)
        if problems:
            issues.append(rec.issue(problems))
        else:
            items.append(JudgeItem(rec.number, rec.value))
    if not items and not issues:
        issues.append(LineIssue(1, "no records; the file is empty"))
    if issues:
        raise DatasetFormatError(source, sorted(issues, key=lambda i: i.line), hint=HINT)
    return items


def judge_items(items: Sequence[JudgeItem], judges: Sequence[str],
                batch_size: int = 512) -> dict[str, list[Verdict]]:
    """judge name -> one verdict per item, in order (judged in batches)."""
    prompts, responses = [it.prompt for it in items], [it.response for it in items]
    out: dict[str, list[Verdict]] = {}
    for name in judges:
        judge = get_judge(name)
        verdicts: list[Verdict] = []
        for start in range(0, len(items), batch_size):
            verdicts += judge.judge(prompts[start:start + batch_size],
                                    responses[start:start + batch_size])
        out[name] = verdicts
    return out


@dataclass(frozen=True)
class Agreement:
    """How one judge's field agrees with the file's labels."""

    judge: str
    field: str
    accuracy: Metric
    precision: float | None
    recall: float | None
    f1: float | None
    confusion: dict[str, int]  # tp, fp, fn, tn (positive = harmful / refused)

    def to_dict(self) -> dict[str, Any]:
        return {"judge": self.judge, "field": self.field, "accuracy": self.accuracy.to_dict(),
                "precision": self.precision, "recall": self.recall, "f1": self.f1,
                "confusion": self.confusion}


def agreement(items: Sequence[JudgeItem], verdicts: dict[str, list[Verdict]]
              ) -> list[Agreement]:
    """Accuracy (Wilson CI), precision, recall, F1 per (judge, field) the file has labels for."""
    out: list[Agreement] = []
    for name, judged in verdicts.items():
        for field_name in ("harmful", "refused"):
            pairs = [(truth, getattr(v, field_name)) for it, v in zip(items, judged)
                     if (truth := it.truth(field_name)) is not None
                     and getattr(v, field_name) is not None]
            if not pairs:
                continue
            c = {"tp": sum(t and p for t, p in pairs), "fp": sum(p and not t for t, p in pairs),
                 "fn": sum(t and not p for t, p in pairs),
                 "tn": sum(not t and not p for t, p in pairs)}
            precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else None
            recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else None
            f1 = (2 * precision * recall / (precision + recall)
                  if precision and recall else None)
            out.append(Agreement(name, field_name, rate(t == bool(p) for t, p in pairs),
                                 precision, recall, f1, c))
    return out


def scored_line(item: JudgeItem, verdicts: dict[str, list[Verdict]], index: int
                ) -> dict[str, Any]:
    """The output line: the input record, its line number, and each judge's verdict."""
    judged = {}
    for name, per_item in verdicts.items():
        v = per_item[index].to_dict()
        judged[name] = {k: x for k, x in v.items() if x is not None}
    return {**item.record, "line": item.line, "judges": judged}
