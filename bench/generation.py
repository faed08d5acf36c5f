"""Benchmark: Buckle's generation engine vs the best plain `transformers.generate`, same prompts.

    .venv/bin/python bench/generation.py --json docs/bench/generation.json

The workload is the evaluation's: harmful (AdvBench) and benign (chatterbot) prompts under the
chat template, greedy, 128 new tokens, on the aligned reference model, so reply lengths are
mixed (declines stop early, answers run to the cap). In one run:
  (1) plain `generate`, left-padded, at every batch size of --hf-batches, in input order and
      with the prompts sorted by length (what a user tuning it would try); the best is the
      baseline every ratio is taken against;
  (2) the engine;
  (3) the machine's ceilings for this model: forward-pass-only decode throughput at the
      engine's batch (one new token per row over a KV cache of the workload's mean length),
      and the memory-bandwidth bound of a decode step (weight bytes / measured copy
      bandwidth, times the batch).
Greedy outputs of every arm are compared with the engine's, token for token. Never time this
while anything else runs on the machine (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Any

import torch

from buckle.data import load_prompts
from buckle.generation import GenerationEngine, SamplingParams, encode_chat
from buckle.models import load_model


def _strip(row: list[int], stop: set[int]) -> list[int]:
    """HF rows: cut at the first stop token (exclusive), like the engine reports."""
    for i, t in enumerate(row):
        if t in stop:
            return row[:i]
    return row


def hf_generate(model: Any, tok: Any, prompts: list[list[int]], batch: int, max_new: int,
                stop: set[int], sort: bool) -> tuple[list[list[int]], int, float]:
    """Plain `generate` in batches of `batch`; outputs in input order."""
    tok.padding_side = "left"
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i])) if sort \
        else list(range(len(prompts)))
    outs: dict[int, list[int]] = {}
    t0 = time.perf_counter()
    for b in range(0, len(order), batch):
        idx = order[b:b + batch]
        enc = tok.pad({"input_ids": [prompts[i] for i in idx]}, return_tensors="pt")
        with torch.inference_mode():
            gen = model.generate(**enc, max_new_tokens=max_new, do_sample=False,
                                 pad_token_id=tok.pad_token_id, eos_token_id=sorted(stop))
        for i, row in zip(idx, gen[:, enc["input_ids"].shape[1]:].tolist(), strict=True):
            outs[i] = _strip(row, stop)
    dt = time.perf_counter() - t0
    rows = [outs[i] for i in range(len(prompts))]
    # generated tokens = kept tokens + the stop token when the row stopped before the limit
    return rows, sum(len(o) + (len(o) < max_new) for o in rows), dt


def decode_ceiling(model: Any, batch: int, context: int, repeats: int = 5) -> float:
    """Tokens/s of decode forward passes alone: `batch` rows, one new token each, over a KV
    cache of `context` tokens (no sampling, no bookkeeping): what any generator can reach."""
    from transformers import DynamicCache

    ids = torch.ones(batch, context, dtype=torch.long)
    with torch.inference_mode():
        cache = DynamicCache()
        model(input_ids=ids, past_key_values=cache, use_cache=True)
        step = torch.ones(batch, 1, dtype=torch.long)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(input_ids=step, past_key_values=cache, use_cache=True)
            times.append(time.perf_counter() - t0)
            cache.crop(-1)  # drop the token just added: every timed step sees `context`
    return batch / min(times)


def bandwidth_gbs(mb: int = 512, repeats: int = 5) -> float:
    """Copy bandwidth (read + write) of a large tensor, GB/s."""
    x = torch.empty(mb * 2**20 // 4, dtype=torch.float32).fill_(1.0)
    y = torch.empty_like(x)
    best = min(_timed(lambda: y.copy_(x)) for _ in range(repeats))
    return 2 * x.numel() * 4 / best / 1e9


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--harmful", type=int, default=32, help="AdvBench prompts")
    ap.add_argument("--benign", type=int, default=32, help="chatterbot prompts")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--hf-batches", default="8,16,32,64")
    ap.add_argument("--engine-batch", type=int, default=128)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    lm = load_model(args.model)
    tok = lm.tokenizer
    items = (load_prompts("advbench", limit=args.harmful)
             + load_prompts("chatterbot", limit=args.benign))
    prompts = [encode_chat(tok, [{"role": "user", "content": p.prompt}]) for p in items]
    engine = GenerationEngine.from_loaded(lm, max_batch_size=args.engine_batch)
    stop = {int(t) for t in engine.stop_ids.tolist()}
    params = SamplingParams(max_new_tokens=args.max_new_tokens)

    engine.generate(prompts[:4], params)  # warm-up (allocator, thread pool)
    t0 = time.perf_counter()
    res = engine.generate(prompts, params)
    eng_dt = time.perf_counter() - t0
    eng_n = sum(len(r.token_ids) + (r.finish_reason == "stop") for r in res)
    reference = [r.token_ids for r in res]
    rows: dict[str, dict[str, Any]] = {
        "engine": {"tok_s": eng_n / eng_dt, "seconds": eng_dt, "tokens": eng_n,
                   "identical": len(res)}}
    for batch in (int(b) for b in args.hf_batches.split(",")):
        for sort in (False, True):
            outs, n, dt = hf_generate(lm.model, tok, prompts, batch, args.max_new_tokens, stop,
                                      sort)
            rows[f"hf_batch_{batch}{'_sorted' if sort else ''}"] = {
                "tok_s": n / dt, "seconds": dt, "tokens": n,
                "identical": sum(a == b for a, b in zip(reference, outs, strict=True))}
    hf = {k: v for k, v in rows.items() if k.startswith("hf_")}
    best = max(hf, key=lambda k: hf[k]["tok_s"])
    mean_context = sum(len(p) for p in prompts) / len(prompts) + args.max_new_tokens / 2
    batch = min(args.engine_batch, len(prompts))
    ceiling = decode_ceiling(lm.model, batch, int(mean_context))
    weight_bytes = sum(p.numel() * p.element_size() for p in lm.model.parameters())
    bw = bandwidth_gbs()
    bound = bw * 1e9 / weight_bytes * batch  # tokens/s if a step only had to read the weights
    print(f"model={args.model} prompts={len(prompts)} max_new_tokens={args.max_new_tokens} "
          f"threads={torch.get_num_threads()} torch={torch.__version__} "
          f"cpu={platform.processor() or platform.machine()}")
    print(f"{'method':<22}{'tok/s':>9}{'vs best generate':>18}{'identical':>11}")
    for name, r in rows.items():
        print(f"{name:<22}{r['tok_s']:>9.1f}{r['tok_s'] / hf[best]['tok_s']:>17.2f}x"
              f"{r['identical']:>7}/{len(prompts)}")
    print(f"best plain generate: {best}; engine / best = "
          f"{rows['engine']['tok_s'] / hf[best]['tok_s']:.2f}x")
    print(f"decode forward-pass ceiling at batch {batch}, context {int(mean_context)}: "
          f"{ceiling:.1f} tok/s (engine at {rows['engine']['tok_s'] / ceiling:.0%} of it); "
          f"bandwidth bound {bound:.0f} tok/s ({bw:.1f} GB/s, {weight_bytes / 1e9:.2f} GB weights)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows, "best_plain": best,
                       "engine_vs_best": rows["engine"]["tok_s"] / hf[best]["tok_s"],
                       "decode_ceiling_tok_s": ceiling, "ceiling_batch": batch,
                       "ceiling_context": int(mean_context), "bandwidth_gb_s": bw,
                       "bandwidth_bound_tok_s": bound, "weight_bytes": weight_bytes},
                      f, indent=2)


if __name__ == "__main__":
    main()
