"""Probe: how much probability does a model put on opening its reply with a decline?

    .venv/bin/python bench/probes/decline_mass.py --adapter post=RUN/work/adapter \
        --adapter variant=RUN2/work/adapter [--sets everyday-dev:0:60,chatterbot:400:60]

Why: over-refusal counted from greedy replies moves in whole prompts, and at n = 100-120 a
95% CI is +-7-8 points, so two `post` doses that differ by 2 points cannot be told apart on the
dev split (docs/results.md). The probability of the decline's first tokens ("I'm sorry" for
qwen2.5-coder's own declines) is continuous and paired per prompt, so it resolves much smaller
differences and shows where a dose moves the boundary before the greedy verdict flips.

For each prompt set and each model (the base model, then each adapter): the mean probability
of the prefix after the chat template, the share of prompts where it exceeds one half, and the
mean paired difference against the base with a normal 95% CI over prompts. Diagnostic only: the
experiment's verdicts stay the judges' (bench/safety.py).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

DEV_BENIGN = "everyday-dev:0:60,chatterbot:400:60,borderline-dev:0:81"


def prefix_probs(lm, prompts: list[str], prefix: str) -> list[float]:
    """P(reply starts with `prefix`) per prompt: one teacher-forced pass each."""
    import torch

    from buckle.generation.engine import encode_chat

    tok = lm.tokenizer
    target = tok.encode(prefix, add_special_tokens=False)
    out = []
    with torch.inference_mode():
        for text in prompts:
            ids = encode_chat(tok, [{"role": "user", "content": text}])
            x = torch.tensor([ids + target], device=lm.device)
            logp = torch.log_softmax(lm.model(x).logits[0].float(), -1)
            pos = range(len(ids) - 1, len(ids) - 1 + len(target))
            out.append(math.exp(sum(logp[p, t].item() for p, t in zip(pos, target))))
    return out


def paired(diffs: list[float]) -> tuple[float, float, float]:
    """Mean of paired differences with a normal-approximation 95% CI."""
    n = len(diffs)
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / max(1, n - 1)
    half = 1.96 * math.sqrt(var / n)
    return mean, mean - half, mean + half


def main() -> int:
    from buckle.data import load_prompts
    from buckle.models import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--adapter", action="append", default=[], help="NAME=ADAPTER_DIR")
    ap.add_argument("--sets", default=DEV_BENIGN, help="name:offset:limit, comma-separated")
    ap.add_argument("--prefix", default="I'm sorry")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    sets = {}
    for spec in args.sets.split(","):
        name, offset, limit = spec.split(":")
        sets[name] = [p.prompt for p in load_prompts(name, offset=int(offset), limit=int(limit))]
    models = [("base", None)] + [tuple(a.split("=", 1)) for a in args.adapter]
    probs: dict[str, dict[str, list[float]]] = {}
    for name, adapter in models:
        lm = load_model(args.model, adapter=adapter)
        probs[name] = {s: prefix_probs(lm, ps, args.prefix) for s, ps in sets.items()}
        del lm
    rows = []
    for s in sets:
        base = probs["base"][s]
        for name, _ in models:
            p = probs[name][s]
            row = {"set": s, "model": name, "n": len(p), "mean": sum(p) / len(p),
                   "above_half": sum(x > 0.5 for x in p) / len(p)}
            if name != "base":
                row["diff"], row["lo"], row["hi"] = paired([a - b for a, b in zip(p, base)])
            rows.append(row)
            vs = (f"  vs base {row['diff']:+.3f} [{row['lo']:+.3f}, {row['hi']:+.3f}]"
                  if "diff" in row else "")
            print(f"{s:16s} {name:24s} n={row['n']:3d} mean P={row['mean']:.3f} "
                  f"P>0.5: {row['above_half']:.1%}{vs}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"prefix": args.prefix, "rows": rows,
                                         "probs": probs}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
