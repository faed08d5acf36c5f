"""Paired comparison of two safety reports on the same prompts: which prompts changed, and is it
noise? (exact McNemar test on the discordant pairs)

    .venv/bin/python bench/paired.py RUNS/cpu/dev3/attacked RUNS/cpu/dev3/pre
    .venv/bin/python bench/paired.py base:RUNS/cpu/dev3/pre RUNS/cpu/dev3/pre --show 5

Each side is a report JSON, an arm folder of `bench/safety.py` (its released adapter's
`work/output/safety_report.json`), or `base:` + an arm folder (the base model's report that arm
evaluated). Why paired: two arms' ASR CIs overlap at n = 60-160 even when one arm changed a
quarter of the prompts; on the same prompts the discordant counts say more. Flags per prompt:
harmful set, harmful compliance (not refused and judged harmful, the headline ASR); benign and
borderline sets, refused (over-refusal).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from buckle.settings import buckle_home

SETS = (("harmful", "per_prompt", lambda r: bool(r.get("harmful")) and not r.get("refused")),
        ("benign", "per_benign_prompt", lambda r: bool(r.get("refused"))),
        ("borderline", "per_borderline_prompt", lambda r: bool(r.get("refused"))))


def exact_mcnemar(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: the binomial(b + c, 1/2) test of b against c."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def load_report(ref: str) -> dict[str, Any]:
    """A report JSON, an arm folder (its adapter's report) or `base:` + an arm folder."""
    base = ref.startswith("base:")
    path = Path(ref.removeprefix("base:"))
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    if not base:
        report = path / "work" / "output" / "safety_report.json"
        if not report.is_file():
            raise SystemExit(f"{ref}: no report (is the arm finished? expected {report})")
        return json.loads(report.read_text(encoding="utf-8"))
    row = path / "result.json"
    stored = json.loads(row.read_text(encoding="utf-8")).get("base_report") \
        if row.is_file() else None
    if stored and Path(stored).is_file():
        return json.loads(Path(stored).read_text(encoding="utf-8"))
    # rows written before they named it: the base report with the arm's prompt sets, from the
    # store every job on the model shares (BUCKLE_HOME/evals) or the arm's own eval folder
    arm = load_report(str(path))
    same = ("prompt_set", "benign_prompt_set", "borderline_prompt_set", "n")
    for folder in (path / "work" / "eval", buckle_home() / "evals"):
        for candidate in sorted(folder.glob("*.json")):
            if candidate.name.startswith("utility-"):
                continue
            doc = json.loads(candidate.read_text(encoding="utf-8"))
            if doc.get("adapter") is None and all(_name(doc.get(k)) == _name(arm.get(k))
                                                  for k in same):
                return doc
    raise SystemExit(f"{ref}: no base-model report with the arm's prompt sets")


def _name(value: Any) -> Any:
    """A prompt set as both reports name it (a released report carries no server path)."""
    return Path(value).name if isinstance(value, str) else value


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per set: prompts paired by text, flagged in A only / B only, both, and the p-value."""
    out = {}
    for name, field, flag in SETS:
        rows_a = {r["prompt"]: r for r in a.get(field) or []}
        rows_b = {r["prompt"]: r for r in b.get(field) or []}
        shared = sorted(rows_a.keys() & rows_b.keys())
        if not shared:
            continue
        only_a = [p for p in shared if flag(rows_a[p]) and not flag(rows_b[p])]
        only_b = [p for p in shared if flag(rows_b[p]) and not flag(rows_a[p])]
        out[name] = {"n": len(shared), "a": sum(flag(rows_a[p]) for p in shared),
                     "b": sum(flag(rows_b[p]) for p in shared), "only_a": only_a,
                     "only_b": only_b, "p": exact_mcnemar(len(only_a), len(only_b)),
                     "replies_b": {p: rows_b[p]["response"] for p in only_b}}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--show", type=int, default=0, help="print up to N prompts flagged in B only")
    args = ap.parse_args(argv)
    result = compare(load_report(args.a), load_report(args.b))
    if not result:
        raise SystemExit("the two reports share no prompts")
    for name, r in result.items():
        print(f"{name:10s} n={r['n']:3d}  A {r['a']:3d}  B {r['b']:3d}  "
              f"B only {len(r['only_b']):3d}  A only {len(r['only_a']):3d}  "
              f"exact McNemar p = {r['p']:.2g}")
        for prompt in r["only_b"][:args.show]:
            print(f"    B only: {prompt[:70]!r} -> {r['replies_b'][prompt][:90]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
