"""Benchmark: Buckle's generation engine vs plain `transformers.generate`, same prompts, greedy.

    .venv/bin/python bench/generation.py --n 100 --max-new-tokens 64

Three ways over the same AdvBench prompts with the default model, in one run:
  (1) `generate` one prompt at a time (on --n-seq prompts; tok/s extrapolates),
  (2) `generate` batched at 16, left-padded, in input order,
  (3) the engine.
Greedy outputs of (2) and (3) are compared token for token. Results are appended to
docs/benchmarks.md by hand from the printed table (and written as JSON with --json).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from buckle.data import load_prompts
from buckle.generation import GenerationEngine, SamplingParams, encode_chat
from buckle.models import load_model


def _strip(row: list[int], stop: set[int], pad: int) -> list[int]:
    """HF rows: cut at the first stop token (exclusive), like the engine reports."""
    for i, t in enumerate(row):
        if t in stop:
            return row[:i]
    return row


def hf_generate(model, tok, prompts: list[list[int]], batch: int, max_new: int,
                stop: set[int]) -> tuple[list[list[int]], int, float]:
    tok.padding_side = "left"
    outs: list[list[int]] = []
    t0 = time.perf_counter()
    for b in range(0, len(prompts), batch):
        enc = tok.pad({"input_ids": prompts[b:b + batch]}, return_tensors="pt")
        with torch.inference_mode():
            gen = model.generate(**enc, max_new_tokens=max_new, do_sample=False,
                                 pad_token_id=tok.pad_token_id, eos_token_id=sorted(stop))
        for row in gen[:, enc["input_ids"].shape[1]:].tolist():
            outs.append(_strip(row, stop, tok.pad_token_id))
    dt = time.perf_counter() - t0
    # generated tokens = kept tokens + the stop token when the row stopped before the limit
    n = sum(len(o) + (len(o) < max_new) for o in outs)
    return outs, n, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--n", type=int, default=100, help="prompts for batched runs")
    ap.add_argument("--n-seq", type=int, default=20, help="prompts for the one-at-a-time run")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--engine-batch", type=int, default=128)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    lm = load_model(args.model)
    tok = lm.tokenizer
    items = load_prompts("advbench", limit=args.n)
    prompts = [encode_chat(tok, [{"role": "user", "content": p.prompt}]) for p in items]
    engine = GenerationEngine.from_loaded(lm, max_batch_size=args.engine_batch)
    stop = {int(t) for t in engine.stop_ids.tolist()}
    params = SamplingParams(max_new_tokens=args.max_new_tokens)

    engine.generate(prompts[:4], params)  # warm-up (allocator, thread pool)
    t0 = time.perf_counter()
    res = engine.generate(prompts, params)
    eng_dt = time.perf_counter() - t0
    eng_n = sum(len(r.token_ids) + (r.finish_reason == "stop") for r in res)

    hf16, hf16_n, hf16_dt = hf_generate(lm.model, tok, prompts, 16, args.max_new_tokens, stop)
    seq, seq_n, seq_dt = hf_generate(lm.model, tok, prompts[:args.n_seq], 1,
                                     args.max_new_tokens, stop)

    same16 = sum(a.token_ids == b for a, b in zip(res, hf16))
    same1 = sum(a.token_ids == b for a, b in zip(res, seq))
    rows = {
        "hf_sequential": {"tok_s": seq_n / seq_dt, "prompts": len(seq), "seconds": seq_dt},
        "hf_batched_16": {"tok_s": hf16_n / hf16_dt, "prompts": len(hf16), "seconds": hf16_dt},
        "engine": {"tok_s": eng_n / eng_dt, "prompts": len(res), "seconds": eng_dt},
    }
    base = rows["hf_batched_16"]["tok_s"]
    print(f"model={args.model} max_new_tokens={args.max_new_tokens} threads="
          f"{torch.get_num_threads()} torch={torch.__version__} cpu={platform.processor()}")
    print(f"{'method':<16}{'prompts':>8}{'tok/s':>10}{'vs batched16':>14}")
    for name, r in rows.items():
        print(f"{name:<16}{r['prompts']:>8}{r['tok_s']:>10.1f}{r['tok_s'] / base:>13.2f}x")
    print(f"identical greedy outputs: engine vs batched16 {same16}/{len(res)}, "
          f"engine vs sequential {same1}/{len(seq)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows, "same_vs_batched16": same16,
                       "same_vs_sequential": same1}, f, indent=2)


if __name__ == "__main__":
    main()
