"""Time the embedding judges (refusal + harm) on 1,000 (prompt, reply) pairs on this CPU.

    nice -n 10 .venv/bin/python bench/judges.py [--n 1000] [--threads 2] [--weights PATH]

Pairs: the PyRIT objective and refusal-scorer rows plus Buckle's 200 chatterbot evaluation
items, cycled in a fixed order to n (replies are realistic lengths: median ~500 chars, some
several thousand; the encoder truncates at the lengths stored in the weights file). Cycling
repeats texts, but each run clears the encoder cache first, so repeats are not free unless they
repeat within the run (a repeated text in one batch IS encoded once — as in production).
Use --unique to make every reply distinct (a counter is appended), the worst case.

Reports wall seconds and process CPU seconds (user+sys): on a shared machine wall time depends
on what else runs; CPU seconds / threads estimates the uncontended wall time.
The TF-IDF `harm` judge is timed on the same pairs as the baseline.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--unique", action="store_true")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from buckle.data import load_conversations
    from buckle.evaluation.judges.embedding import get_encoder
    from buckle.evaluation.judges.harm import HarmClassifierJudge
    from buckle.evaluation.judges.harm_data import load_objective_labels, load_refusal_labels

    obj, _ = load_objective_labels()
    ref, _ = load_refusal_labels()
    pool = [(r.prompt, r.response) for r in obj + ref]
    pool += [(c.prompt, c.messages[-1].content) for c in load_conversations("chatterbot",
                                                                             limit=200)]
    pairs = [pool[i % len(pool)] for i in range(args.n)]
    if args.unique:
        pairs = [(p, f"{r} [{i}]") for i, (p, r) in enumerate(pairs)]
    prompts = [p for p, _ in pairs]
    replies = [r for _, r in pairs]
    distinct = len(set(replies))
    print(f"{args.n} pairs ({distinct} distinct replies, {len(set(prompts))} distinct prompts), "
          f"median reply {sorted(map(len, replies))[len(replies) // 2]} chars, "
          f"torch threads {torch.get_num_threads()}")

    t0, c0 = time.perf_counter(), cpu_seconds()
    from buckle.evaluation.judges import get_judge

    refusal = get_judge("refusal")  # what reports and screening use
    harm = get_judge("harm")  # request gate x max(harm head, 1 - refusal head)
    w = refusal.weights
    for ml in {w.prompt_max_length, w.response_max_length}:
        get_encoder(ml)._cache.clear()
        get_encoder(ml).encode(["warm-up"])
        get_encoder(ml)._cache.clear()
    print(f"load (encoder + heads, once per process): {time.perf_counter() - t0:.2f} s wall")

    t0, c0 = time.perf_counter(), cpu_seconds()
    rv = refusal.judge(prompts, replies)
    t1, c1 = time.perf_counter(), cpu_seconds()
    hv = harm.judge(prompts, replies)
    t2, c2 = time.perf_counter(), cpu_seconds()
    print(f"embedding refusal judge: {t1 - t0:.2f} s wall, {c1 - c0:.2f} s CPU")
    print(f"embedding harm judge (embeddings cached from the refusal call): "
          f"{t2 - t1:.2f} s wall, {c2 - c1:.2f} s CPU")
    print(f"BOTH embedding judges, {args.n} pairs: {t2 - t0:.2f} s wall, {c2 - c0:.2f} s CPU "
          f"(~{(c2 - c0) / args.threads:.2f} s uncontended on {args.threads} cores)")
    print(f"  refused {sum(v.refused for v in rv)}/{len(rv)}, "
          f"harmful {sum(v.harmful for v in hv)}/{len(hv)}")

    tfidf = HarmClassifierJudge()
    t0, c0 = time.perf_counter(), cpu_seconds()
    tv = tfidf.judge(prompts, replies)
    t1, c1 = time.perf_counter(), cpu_seconds()
    print(f"TF-IDF harm judge (baseline): {t1 - t0:.2f} s wall, {c1 - c0:.2f} s CPU; "
          f"harmful {sum(v.harmful for v in tv)}/{len(tv)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
