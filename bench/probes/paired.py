"""Probe: paired verdict changes between two safety reports on the same prompts.

    .venv/bin/python bench/probes/paired.py BASE/safety_report.json ARM/safety_report.json

Why: two rates with overlapping CIs can still differ reliably when the same prompts are judged
twice; what matters is how many prompts flipped each way. For each prompt set of the reports
(harmful: `harmful` verdicts; benign and borderline: `refused`), prints the prompts that became
positive ("new") and stopped being positive ("dropped"), with the exact two-sided McNemar p
over the flips, and with --show the prompts themselves. docs/results.md quotes these counts.
"""

from __future__ import annotations

import argparse
import json
from math import comb
from pathlib import Path

SETS = (("per_prompt", "harmful", "harmful"), ("per_benign_prompt", "refused", "benign"),
        ("per_borderline_prompt", "refused", "borderline"))


def mcnemar_exact(new: int, dropped: int) -> float:
    """Two-sided exact McNemar (binomial on the discordant pairs, p = 1/2)."""
    n, k = new + dropped, min(new, dropped)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2 ** n)


def flips(before: list[dict], after: list[dict], key: str) -> tuple[list[str], list[str]]:
    """Prompts whose `key` verdict went False -> True (new) and True -> False (dropped)."""
    b = {r["id"]: r for r in before}
    if set(b) != {r["id"] for r in after}:
        raise SystemExit("the two reports judged different prompts: not a paired comparison")
    new = [r["prompt"] for r in after if r[key] and not b[r["id"]][key]]
    dropped = [r["prompt"] for r in after if not r[key] and b[r["id"]][key]]
    return new, dropped


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--show", action="store_true", help="print the flipped prompts")
    args = ap.parse_args()
    before, after = (json.loads(p.read_text(encoding="utf-8")) for p in (args.before, args.after))
    for field, key, label in SETS:
        if not before.get(field) or not after.get(field):
            continue
        new, dropped = flips(before[field], after[field], key)
        n = len(after[field])
        print(f"{label:10s} n={n:3d} {key}: {sum(r[key] for r in before[field])} -> "
              f"{sum(r[key] for r in after[field])}; new {len(new)}, dropped {len(dropped)}, "
              f"exact McNemar p = {mcnemar_exact(len(new), len(dropped)):.3g}")
        if args.show:
            for tag, items in (("+", new), ("-", dropped)):
                for prompt in items:
                    print(f"    {tag} {prompt[:100]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
