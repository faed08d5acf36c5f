"""Benchmark: one engine option off vs on, on the CTRL paper grid (same requests, same seeds).

    flock /tmp/buckle-bench.lock .venv/bin/python bench/shared_rows.py [--items 2] [--threads 1]
    flock /tmp/buckle-bench.lock .venv/bin/python bench/shared_rows.py --option continuous \
        --items 20 --threads 2 --repeats 1

`--option share_rows` (default): decoding identical rows once (copy-on-write rows) vs one row
per request. `--option continuous`: continuous batching (queued prompts join the running batch
as requests finish) vs one batch at a time; it matters when the requests exceed one batch's
token budget (20 items x 25 grid points x 128 new tokens do).

The CTRL paper grid samples one revision prompt at 25 (temperature, top-p) points. At low
temperature or top-p many samples draw the same tokens for a long time; `GenerationEngine`
computes such rows once and forks them when their draws differ. This runs the same requests
(same seeds, so the same samples) with the option False and True, alternating, and reports
wall time, row-steps computed (rows x forward calls, counted by a forward hook) and whether the
two produced identical samples.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from buckle.curation.config import DEFAULT_GRID, CurationConfig
from buckle.data import load_conversations
from buckle.generation import GenerationEngine, SamplingParams, encode_chat
from buckle.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--items", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--option", choices=("share_rows", "continuous"), default="share_rows")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model(args.model)
    cfg = CurationConfig(temperatures=DEFAULT_GRID, top_ps=DEFAULT_GRID)
    prompts, params = [], []
    for k, conv in enumerate(load_conversations("chatterbot", offset=200, limit=args.items)):
        text = cfg.render_revision_prompt(conv.messages[0].content, conv.messages[-1].content)
        ids = encode_chat(lm.tokenizer, [{"role": "user", "content": text}])
        for j, (t, p) in enumerate(cfg.grid):
            prompts.append(ids)
            params.append(SamplingParams(max_new_tokens=args.max_new_tokens, temperature=t,
                                         top_p=p, seed=1000 * k + j))
    print(f"{args.items} items x {len(cfg.grid)} grid points, threads={args.threads}")
    samples: dict[bool, list] = {}
    for _ in range(args.repeats):
        for share in (False, True):
            engine = GenerationEngine.from_loaded(lm, **{args.option: share})
            rows: list[int] = []
            hook = lm.model.register_forward_pre_hook(
                lambda _m, _a, kw, rows=rows: rows.append(kw["input_ids"].shape[0]),
                with_kwargs=True)
            t0 = time.perf_counter()
            out = engine.generate(prompts, params)
            seconds = time.perf_counter() - t0
            hook.remove()
            samples[share] = [r.token_ids for r in out]
            tokens = sum(len(r.token_ids) for r in out)
            print(f"{args.option}={share!s:5}  {seconds:6.1f} s  {tokens} tokens  "
                  f"{tokens / seconds:6.1f} tok/s  row-steps {sum(rows):5d}  "
                  f"distinct samples {len({tuple(s) for s in samples[share]})}  "
                  f"prefills {engine.stats.prefills}  load {os.getloadavg()[0]:.1f}", flush=True)
    same = sum(a == b for a, b in zip(samples[True], samples[False]))
    print(f"identical samples: {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
