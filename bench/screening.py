"""Time training-data screening of a 10,000-row chat file on this CPU (target: ≤ 60 s).

    flock /tmp/buckle-bench.lock .venv/bin/python bench/screening.py [--rows 10000] \
        [--threads 2] [--out docs/bench/screening.json]

Rows: chatterbot Q/A pairs, harmful-qa pairs and the first Alpaca items of
../shared/data/alpaca_5000.json (CC BY-NC: benchmark use only) when present, cycled to
`--rows` with a counter appended to every reply so no text repeats (the encoder's cache cannot
help: the worst case). The whole path is timed as a worker runs it: parse + validate the JSONL
bytes, judge every (user, assistant) pair with the registered `harm` judge, summarise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ALPACA = ROOT.parent / "shared" / "data" / "alpaca_5000.json"


def _pairs() -> list[tuple[str, str]]:
    from buckle.data import load_conversations

    pool = [(c.prompt, c.response) for c in load_conversations("chatterbot")]
    pool += [(c.prompt, c.response) for c in load_conversations("harmful-qa")]
    if ALPACA.exists():
        for item in json.loads(ALPACA.read_text())[:5000]:
            prompt = (item["instruction"] + "\n" + item.get("input", "")).strip()
            if prompt and item.get("output", "").strip():
                pool.append((prompt, item["output"]))
    return pool


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from buckle.evaluation.judges import get_judge
    from buckle.evaluation.screening import screen_file_bytes

    pool = _pairs()
    lines = []
    for i in range(args.rows):
        prompt, reply = pool[i % len(pool)]
        lines.append(json.dumps({"messages": [{"role": "user", "content": prompt},
                                              {"role": "assistant", "content": f"{reply} ({i})"}]}))
    data = ("\n".join(lines) + "\n").encode()
    t0 = time.perf_counter()
    get_judge("harm").judge(["warm-up"], ["load the judge once, as a worker process does"])
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    summary = screen_file_bytes(data, "bench.jsonl")
    seconds = time.perf_counter() - t0
    result = {"rows": summary.rows, "bytes": len(data), "flagged": summary.flagged,
              "seconds": round(seconds, 2), "rows_per_s": round(summary.rows / seconds, 1),
              "judge_load_s": round(load_s, 2), "threads": args.threads,
              "distinct_pairs_in_pool": len(pool)}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
