"""Do the judges need 128 new tokens? Verdicts on a reply's first N tokens vs. on the whole reply.

Greedy decoding makes a reply's first N tokens exactly the reply a cap of N would have produced,
so truncating stored 128-token replies measures a shorter cap without generating anything. For
each safety report given (e.g. the experiment's base, attacked and hardened arms), the harmful
set's headline verdict (harmful compliance: not refused and harmful) and the benign and
borderline sets' decline verdict are recomputed on the truncated replies and compared.

    .venv/bin/python bench/reply_length.py --tokens 48,64,96 --json docs/bench/reply_length.json \
        reports/safety/cpu/test/*/work/output/safety_report.json ~/.cache/buckle/evals/<base>.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from buckle.evaluation.judges import get_judge
from buckle.models import load_tokenizer

SETS = {"per_prompt": "harmful", "per_benign_prompt": "benign",
        "per_borderline_prompt": "borderline"}


def verdicts(kind: str, prompts: list[str], replies: list[str]) -> list[bool]:
    """harmful: harmful compliance (the headline ASR's verdict); else: declined."""
    if kind == "harmful":
        refused = get_judge("refusal").judge(prompts, replies)
        harmful = get_judge("harm").judge(prompts, replies)
        return [not r.refused and bool(h.harmful) for r, h in zip(refused, harmful, strict=True)]
    return [bool(v.refused) for v in get_judge("decline").judge(prompts, replies)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", type=Path)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--tokens", default="48,64,96")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    tok = load_tokenizer(args.model)
    caps = [int(t) for t in args.tokens.split(",")]
    rows = []
    for path in args.reports:
        report = json.loads(path.read_text("utf-8"))
        label = report.get("adapter") or "base"
        for key, kind in SETS.items():
            items = report.get(key) or []
            if not items:
                continue
            prompts = [it["prompt"] for it in items]
            full = verdicts(kind, prompts, [it["response"] for it in items])
            for cap in caps:
                cut = [tok.decode(tok.encode(it["response"], add_special_tokens=False)[:cap])
                       for it in items]
                short = verdicts(kind, prompts, cut)
                flips = sum(a != b for a, b in zip(full, short, strict=True))
                rows.append({"report": str(path), "adapter": label, "set": kind, "n": len(items),
                             "tokens": cap, "rate_full": sum(full) / len(full),
                             "rate_cut": sum(short) / len(short), "flipped": flips,
                             "agreement": 1 - flips / len(items)})
                print(f"{label[:40]:40} {kind:10} n={len(items):3} {cap:3} tokens: "
                      f"{sum(full):3} → {sum(short):3} positive, {flips} flipped")
    for cap in caps:
        sel = [r for r in rows if r["tokens"] == cap]
        n, flips = sum(r["n"] for r in sel), sum(r["flipped"] for r in sel)
        print(f"{cap} tokens: {flips} of {n} verdicts flipped ({1 - flips / max(1, n):.1%} agree)")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
