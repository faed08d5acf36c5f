"""Human-labelled (prompt, response) pairs from PyRIT's scorer evaluations, and the held-out split.

Why PyRIT's labels? They are human judgements of real model responses to harmful objectives
("did the response achieve the objective?" — i.e. harmful compliance), they ship inside a
pinned PyPI wheel (`pyrit==1.1.0`, MIT), and no other labelled data reaches this machine.
We read the CSV members straight out of the verified wheel (`buckle.assets`); no PyRIT code runs.

The split lives here, not in the training script, so the script that trains the shipped judge and
the test that checks its accuracy hold out exactly the same rows.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from buckle.assets import WheelMember, read_member_bytes

PYRIT_PACKAGE = "pyrit"
PYRIT_VERSION = "1.1.0"
PYRIT_WHEEL_SHA256 = "84581036bace7ff2aa92712e1e3f472a3a3bccc77567d5fbe642540c0ba20b0a"
_EVALS = "pyrit/datasets/scorer_evals"

# human_score 1 = the response achieved the harmful objective (harmful compliance), 0 = it did not.
OBJECTIVE_MEMBERS: tuple[str, ...] = tuple(
    f"{_EVALS}/objective/{name}.csv"
    for name in (
        "bias", "chemical_biological", "cyber", "exploits", "harassment_bullying", "hate_speech",
        "illegal_activity", "info_integrity", "misinformation", "phishing", "privacy",
        "self_harm", "sexual", "violence",
    )
)
# human_score 1 = refusal or off-topic reply, 0 = the model engaged with the request.
REFUSAL_MEMBERS: tuple[str, ...] = (
    f"{_EVALS}/refusal_scorer/refusal.csv",
    f"{_EVALS}/refusal_scorer/refusal_extra.csv",
)

HOLDOUT_FRACTION = 0.2
HOLDOUT_SEED = 20240531


@dataclass(frozen=True)
class LabelledResponse:
    """One human-labelled pair. `label` is 1 for the positive class of its source file."""

    prompt: str
    response: str
    label: int
    category: str
    source: str  # wheel member it came from


def _member(path: str) -> WheelMember:
    return WheelMember(PYRIT_PACKAGE, PYRIT_VERSION, path, wheel_sha256=PYRIT_WHEEL_SHA256)


def parse_scorer_csv(data: bytes, source: str) -> list[LabelledResponse]:
    """Parse one PyRIT scorer-eval CSV: leading `#` comment lines, then a header row.

    Column order differs between files, so columns are read by name.
    """
    text = data.decode("utf-8-sig")
    lines = text.splitlines(keepends=True)
    start = 0
    while start < len(lines) and lines[start].lstrip().startswith("#"):
        start += 1
    reader = csv.DictReader(io.StringIO("".join(lines[start:])))
    rows: list[LabelledResponse] = []
    for rec in reader:
        score = (rec.get("human_score") or "").strip()
        if score not in ("0", "1"):
            raise ValueError(f"{source}: unexpected human_score {score!r}")
        category = rec.get("harm_category") or source.rsplit("/", 1)[-1].removesuffix(".csv")
        rows.append(LabelledResponse(
            prompt=rec["objective"], response=rec["assistant_response"], label=int(score),
            category=category, source=source,
        ))
    return rows


def _load(members: Iterable[str]) -> tuple[list[LabelledResponse], str]:
    rows: list[LabelledResponse] = []
    digest = hashlib.sha256()
    for path in members:
        data = read_member_bytes(_member(path))
        digest.update(path.encode() + b"\0" + hashlib.sha256(data).digest())
        rows.extend(parse_scorer_csv(data, path))
    return rows, digest.hexdigest()


def load_objective_labels() -> tuple[list[LabelledResponse], str]:
    """All objective-achieved rows (label 1 = harmful compliance) and a sha256 over the files.

    Exact duplicate (prompt, response) pairs are dropped: a duplicate could otherwise sit on both
    sides of the split and count as a free held-out hit.
    """
    rows, digest = _load(OBJECTIVE_MEMBERS)
    return dedupe(rows), digest


def load_refusal_labels() -> tuple[list[LabelledResponse], str]:
    """All refusal-scorer rows (label 1 = refusal or off-topic) and a sha256 over the files."""
    rows, digest = _load(REFUSAL_MEMBERS)
    return dedupe(rows), digest


def dedupe(rows: Sequence[LabelledResponse]) -> list[LabelledResponse]:
    """Keep the first of rows with identical (prompt, response); order otherwise preserved."""
    seen: set[tuple[str, str]] = set()
    out: list[LabelledResponse] = []
    for row in rows:
        key = (row.prompt, row.response)
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def _group_key(response: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}\x1f{response.strip()}".encode()).hexdigest()


def holdout_split(
    rows: Sequence[LabelledResponse],
    fraction: float = HOLDOUT_FRACTION,
    seed: int = HOLDOUT_SEED,
) -> tuple[list[LabelledResponse], list[LabelledResponse]]:
    """Deterministic stratified split into (train, held_out).

    Per label, rows are grouped by response text and groups are taken in sha256(seed, response)
    order until `fraction` of that label is held out. Hashing instead of a RNG makes the split
    identical across numpy/scikit-learn versions and independent of row order; grouping keeps
    identical responses (e.g. five copies of one canned refusal) on one side of the split.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    held_ids: set[int] = set()
    by_label: dict[int, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_label[row.label].append(i)
    for label in sorted(by_label):
        idx = by_label[label]
        target = round(fraction * len(idx))
        groups: dict[str, list[int]] = defaultdict(list)
        for i in idx:
            groups[_group_key(rows[i].response, seed)].append(i)
        taken = 0
        for key in sorted(groups):
            if taken >= target:
                break
            held_ids.update(groups[key])
            taken += len(groups[key])
    train = [r for i, r in enumerate(rows) if i not in held_ids]
    held = [r for i, r in enumerate(rows) if i in held_ids]
    return train, held


def refusals_as_negatives(
    refusal_rows: Sequence[LabelledResponse], exclude_responses: Iterable[str]
) -> list[LabelledResponse]:
    """Refusal-scorer rows labelled refusal/off-topic, relabelled 0 (not harmful compliance).

    A refusal or an off-topic reply never achieves a harmful objective, so these are valid
    negatives. Rows labelled 0 there ("engaged") are NOT used: engaging with a benign request and
    engaging with a harmful one look alike, and that file does not say which was harmful.
    Responses in `exclude_responses` (those in the objective set) are dropped so no text from the
    held-out split can enter training through this door.
    """
    excluded = {r.strip() for r in exclude_responses}
    return [
        LabelledResponse(r.prompt, r.response, 0, "refusal", r.source)
        for r in refusal_rows
        if r.label == 1 and r.response.strip() not in excluded
    ]
