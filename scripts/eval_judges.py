"""Measure the shipped judges on labelled data they were never fitted or chosen on.

    .venv/bin/python scripts/eval_judges.py [--final-test]

Prints, for `harm` / `harm-embedding` / `harm-tfidf` on PyRIT's held-out objective split and
`refusal` / `refusal-keywords` on the held-out refusal split: n, accuracy with its 95% Wilson
interval, precision, recall, F1 and the confusion counts; `harm`'s confusion per harm category;
how many of Buckle's 200 benign chatterbot evaluation answers each harm judge flags. With
`--final-test`, also PyRIT's graded `harm/*.csv` (final test only: run it once, report it, never
choose anything on it). These are the numbers in docs/judges.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def _score(name: str, prompts: list[str], responses: list[str], truth: list[bool],
           field: str) -> tuple[dict, list[bool]]:
    from buckle.evaluation.judges import get_judge
    from buckle.evaluation.metrics import proportion_ci

    pred = [bool(getattr(v, field)) for v in get_judge(name).judge(prompts, responses)]
    tp = sum(p and t for p, t in zip(pred, truth))
    fp = sum(p and not t for p, t in zip(pred, truth))
    fn = sum(t and not p for p, t in zip(pred, truth))
    tn = len(truth) - tp - fp - fn
    precision, recall = tp / max(1, tp + fp), tp / max(1, tp + fn)
    low, high = proportion_ci(tp + tn, len(truth))
    return {"judge": name, "n": len(truth), "positive": sum(truth),
            "accuracy": round((tp + tn) / len(truth), 4), "ci95": [round(low, 3), round(high, 3)],
            "precision": round(precision, 3), "recall": round(recall, 3),
            "f1": round(2 * precision * recall / max(1e-9, precision + recall), 3),
            "tp": tp, "fp": fp, "fn": fn, "tn": tn}, pred


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--final-test", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    from buckle.data import load_conversations
    from buckle.evaluation.judges import get_judge
    from buckle.evaluation.judges.harm_data import (
        holdout_split,
        load_objective_labels,
        load_refusal_labels,
    )

    held = holdout_split(load_objective_labels()[0])[1]
    p, r, y = [x.prompt for x in held], [x.response for x in held], [bool(x.label) for x in held]
    for name in ("harm", "harm-embedding", "harm-tfidf"):
        result, pred = _score(name, p, r, y, "harmful")
        print("objective held-out", json.dumps(result))
        if name == "harm":
            cats: dict[str, dict[str, int]] = defaultdict(
                lambda: {"tp": 0, "fp": 0, "fn": 0, "tn": 0})
            for row, guess in zip(held, pred):
                key = ("tp" if row.label else "fp") if guess else ("fn" if row.label else "tn")
                cats[row.category][key] += 1
            print("harm per category", json.dumps(dict(sorted(cats.items()))))
    refusal = holdout_split(load_refusal_labels()[0])[1]
    for name in ("refusal", "refusal-keywords"):
        result, _ = _score(name, [x.prompt for x in refusal], [x.response for x in refusal],
                           [bool(x.label) for x in refusal], "refused")
        print("refusal held-out", json.dumps(result))
    benign = load_conversations("chatterbot", limit=200)
    for name in ("harm", "harm-embedding", "harm-tfidf"):
        flagged = sum(bool(v.harmful) for v in get_judge(name).judge(
            [c.prompt for c in benign], [c.response for c in benign]))
        print("chatterbot evaluation answers (benign)", json.dumps(
            {"judge": name, "n": len(benign), "flagged": flagged}))
    if args.final_test:
        from train_judges import load_harm_csvs

        rows, _ = load_harm_csvs()
        for name in ("harm", "harm-tfidf"):
            result, _ = _score(name, [x["prompt"] for x in rows], [x["response"] for x in rows],
                               [bool(x["label"]) for x in rows], "harmful")
            print("final test harm/*.csv", json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
