"""Benchmark: Buckle's generation engine vs the best plain `transformers.generate`, same prompts.

    flock /tmp/buckle-bench.lock .venv/bin/python bench/generation.py \
        --json docs/bench/generation.json

The workload is a safety evaluation's (the development split of bench/safety.py: harmful,
benign and borderline prompts under the chat template, greedy, 128 new tokens) on the aligned
reference model, so reply lengths are mixed (declines stop early, answers run to the cap) and
there are more prompts than one batch holds, as in the product's evaluation. In one run:
  (1) plain `generate`, left-padded, in each configuration of --hf (dtype : batch size, `s` =
      prompts sorted by length, `all` = every prompt in one batch); the fastest is the baseline
      every ratio is taken against (sdpa attention: eager measured slower, docs/benchmarks.md);
  (2) the engine in each precision of --engine (fp32 = exact; `auto` = bf16 on a CPU that
      multiplies it natively, else fp32; int8 = opt-in fbgemm dynamic int8, down_proj in fp32),
      each timed with the share of its time spent inside the model's forward passes; the
      headline is the fastest engine against the fastest `generate`, and each precision is
      also compared with `generate` in the same precision;
  (3) the ceilings, in the fastest engine's precision: the forward-pass-only throughput of the
      engine's own passes (what any bookkeeping-free scheduler of the same passes reaches), a
      fixed-batch decode step at the engine's batch cap, and the memory-bandwidth bound of a
      decode step;
  (4) the accuracy cost of each non-fp32 precision: replies identical to fp32, and judge
      verdicts that change (refusal + harm on the harmful prompts, explicit declines on the
      others).
Never time this while anything else runs on the machine (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Any

import torch
from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

from buckle.data import load_prompts
from buckle.generation import GenerationEngine, SamplingParams, encode_chat
from buckle.generation.attention import decode_attention_for
from buckle.generation.precision import INT8, decoding_in, resolve_dtype
from buckle.models import load_model

DEV_SETS = "advbench:200:60,chatterbot:400:60,everyday-dev:0:60,borderline-dev:0:81"
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "int8": INT8}
NAMES = {v: k for k, v in DTYPES.items()}


def _strip(row: list[int], stop: set[int]) -> list[int]:
    """HF rows: cut at the first stop token (exclusive), like the engine reports."""
    for i, t in enumerate(row):
        if t in stop:
            return row[:i]
    return row


def hf_generate(model: Any, tok: Any, prompts: list[list[int]], batch: int, max_new: int,
                stop: set[int], sort: bool) -> tuple[list[list[int]], int, float, int]:
    """Plain `generate` in batches of `batch`; outputs in input order, generated tokens,
    seconds, and row-steps computed (every row of a batch decodes until its longest is done)."""
    tok.padding_side = "left"
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i])) if sort \
        else list(range(len(prompts)))
    outs: dict[int, list[int]] = {}
    row_steps = 0
    t0 = time.perf_counter()
    for b in range(0, len(order), batch):
        idx = order[b:b + batch]
        enc = tok.pad({"input_ids": [prompts[i] for i in idx]}, return_tensors="pt")
        with torch.inference_mode():
            # The last position as an index, not transformers' default int: the int slices a
            # strided view, which torch's CPU bf16 matmul turns into a per-row copy of the
            # output head (45 s for one 64-row prefill of Qwen). The baseline gets the fix the
            # engine has (buckle/generation/prefill.py), so the ratio measures the engine.
            gen = model.generate(**enc, max_new_tokens=max_new, do_sample=False,
                                 pad_token_id=tok.pad_token_id, eos_token_id=sorted(stop),
                                 logits_to_keep=torch.tensor([-1]))
        for i, row in zip(idx, gen[:, enc["input_ids"].shape[1]:].tolist(), strict=True):
            outs[i] = _strip(row, stop)
        row_steps += len(idx) * (gen.shape[1] - enc["input_ids"].shape[1])
    dt = time.perf_counter() - t0
    rows = [outs[i] for i in range(len(prompts))]
    # generated tokens = kept tokens + the stop token when the row stopped before the limit
    return rows, sum(len(o) + (len(o) < max_new) for o in rows), dt, row_steps


def timed_engine(engine: GenerationEngine, prompts: list[list[int]], params: SamplingParams
                 ) -> tuple[list[Any], dict[str, Any]]:
    """Run the engine, timing its model calls (forward passes) apart from everything else."""
    model, forward_s = engine.model, [0.0]
    inner = model.forward

    def counted(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            forward_s[0] += time.perf_counter() - t0

    engine.generate(prompts[:4], params)  # warm-up (allocator, thread pool, bf16 kernels)
    model.forward = counted
    try:
        t0 = time.perf_counter()
        res = engine.generate(prompts, params)
        dt = time.perf_counter() - t0
    finally:
        del model.forward  # back to the class's method
    n = sum(len(r.token_ids) + (r.finish_reason == "stop") for r in res)
    return res, {"tok_s": n / dt, "seconds": dt, "tokens": n, "forward_s": forward_s[0],
                 "forward_share": forward_s[0] / dt, "forward_only_tok_s": n / forward_s[0],
                 "dtype": NAMES[engine.dtype], "steps": engine.stats.steps,
                 "prefills": engine.stats.prefills, "peak_rows": engine.stats.peak_rows}


def decode_ceiling(model: Any, batch: int, context: int, repeats: int = 5) -> float:
    """Tokens/s of decode forward passes alone: `batch` rows, one new token each, over a KV
    cache of `context` tokens (no sampling, no bookkeeping), with the engine's attention."""
    from transformers import DynamicCache

    ids = torch.ones(batch, context, dtype=torch.long)
    with torch.inference_mode(), decode_attention_for(model):
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


def ceilings(lm: Any, dtype: torch.dtype, batch: int, context: int) -> dict[str, Any]:
    """The machine's ceilings for this model in the engine's dtype."""
    with decoding_in(lm.model, dtype):
        ceiling = decode_ceiling(lm.model, batch, context)
        weight_bytes = sum(p.numel() * p.element_size() for p in lm.model.parameters())
        # int8 copies hold their weights outside .parameters(): one byte each
        weight_bytes += sum(m.weight().numel() for m in lm.model.modules()
                            if isinstance(m, Int8Linear))
    bw = bandwidth_gbs()
    return {"decode_ceiling_tok_s": ceiling, "ceiling_batch": batch, "ceiling_context": context,
            "bandwidth_gb_s": bw, "weight_bytes": weight_bytes,
            # tokens/s if a step only had to read the weights
            "bandwidth_bound_tok_s": bw * 1e9 / weight_bytes * batch}


def bandwidth_gbs(mb: int = 512, repeats: int = 5) -> float:
    """Copy bandwidth (read + write) of a large tensor, GB/s."""
    x = torch.empty(mb * 2**20 // 4, dtype=torch.float32).fill_(1.0)
    y = torch.empty_like(x)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        y.copy_(x)
        best = min(best, time.perf_counter() - t0)
    return 2 * x.numel() * 4 / best / 1e9


def verdict_changes(items: list[Any], fp32: list[Any], other: list[Any]) -> dict[str, Any]:
    """Per set: the headline rate in each precision and the prompts whose verdict moved."""
    from buckle.evaluation import get_judge, merge_verdicts

    refusal, harm, decline = get_judge("refusal"), get_judge("harm"), get_judge("decline")
    out: dict[str, Any] = {}
    for name in dict.fromkeys(it.source for it in items):
        idx = [i for i, it in enumerate(items) if it.source == name]
        prompts = [items[i].prompt for i in idx]
        flags = []
        for replies in ([fp32[i].text for i in idx], [other[i].text for i in idx]):
            if name.startswith("advbench"):
                v = [merge_verdicts(a, b) for a, b in zip(refusal.judge(prompts, replies),
                                                          harm.judge(prompts, replies))]
                flags.append([bool(x.harmful) and not x.refused for x in v])  # headline ASR
            else:
                flags.append([bool(x.refused) for x in decline.judge(prompts, replies)])
        a, b = flags
        out[name] = {"n": len(idx), "metric": "asr" if name.startswith("advbench")
                     else "over_refusal", "fp32": sum(a) / len(a), "other": sum(b) / len(b),
                     "flips_up": sum(not x and y for x, y in zip(a, b)),
                     "flips_down": sum(x and not y for x, y in zip(a, b)),
                     "identical_replies": sum(fp32[i].token_ids == other[i].token_ids
                                              for i in idx)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--sets", default=DEV_SETS, help="name:offset:limit, comma-separated")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--hf", default="bfloat16:64,bfloat16:64s,bfloat16:128,bfloat16:128s,"
                    "bfloat16:all,float32:all", help="dtype:batch[s] arms of plain generate")
    ap.add_argument("--engine", default="fp32,auto",
                    help="engine precisions (fp32 required: the exact reference), e.g. fp32,int8")
    ap.add_argument("--engine-batch", type=int, default=128)
    ap.add_argument("--json", default=None)
    ap.add_argument("--ceiling-only", action="store_true",
                    help="re-measure the ceilings into an existing --json (nothing else)")
    args = ap.parse_args()

    lm = load_model(args.model)
    tok = lm.tokenizer
    items = []
    for spec in args.sets.split(","):
        name, offset, limit = spec.split(":")
        items += load_prompts(name, limit=int(limit), offset=int(offset))
    prompts = [encode_chat(tok, [{"role": "user", "content": p.prompt}]) for p in items]
    params = SamplingParams(max_new_tokens=args.max_new_tokens)
    if args.ceiling_only:
        with open(args.json) as f:
            data = json.load(f)
        dtype = DTYPES[data["rows"][data.get("fastest_engine", "engine")]["dtype"]]
        data.update(ceilings(lm, dtype, data["ceiling_batch"], data["ceiling_context"]))
        with open(args.json, "w") as f:
            json.dump(data, f, indent=2)
        print({k: data[k] for k in ("decode_ceiling_tok_s", "bandwidth_bound_tok_s")})
        return
    engines: dict[str, GenerationEngine] = {}
    for p in args.engine.split(","):
        name = "engine" if p == "auto" else f"engine_{p}"
        engines[name] = GenerationEngine.from_loaded(lm, max_batch_size=args.engine_batch,
                                                     precision=p)
    if "engine_fp32" not in engines:
        raise SystemExit("--engine must include fp32: the exact reference replies")
    stop = {int(t) for t in engines["engine_fp32"].stop_ids.tolist()}
    rows: dict[str, dict[str, Any]] = {}
    replies: dict[str, list[Any]] = {}  # engine replies by dtype name
    for name, engine in engines.items():
        res, rows[name] = timed_engine(engine, prompts, params)
        replies.setdefault(rows[name]["dtype"], res)
        print(name, rows[name], flush=True)
    for arm in args.hf.split(","):
        dtype, size = arm.split(":")
        sort = size.endswith("s")
        batch = len(prompts) if size.rstrip("s") == "all" else int(size.rstrip("s"))
        with decoding_in(lm.model, DTYPES[dtype]):
            outs, n, dt, row_steps = hf_generate(lm.model, tok, prompts, batch,
                                                 args.max_new_tokens, stop, sort)
        same_dtype = replies.get(dtype)
        rows[f"hf_{dtype}_{size}"] = {
            "tok_s": n / dt, "seconds": dt, "tokens": n, "row_steps": row_steps,
            "dtype": dtype, "batch": batch, "sorted": sort,
            "identical_to_engine_same_dtype": None if same_dtype is None else sum(
                a == r.token_ids for a, r in zip(outs, same_dtype, strict=True))}
        print(arm, rows[f"hf_{dtype}_{size}"], flush=True)
    hf = {k: v for k, v in rows.items() if k.startswith("hf_")}
    best = max(hf, key=lambda k: hf[k]["tok_s"])
    fastest = max(engines, key=lambda k: rows[k]["tok_s"])
    same_precision = {}  # engine row -> its ratio to the best generate in its own precision
    for name in engines:
        peers = [v["tok_s"] for v in hf.values() if v["dtype"] == rows[name]["dtype"]]
        if peers:
            same_precision[name] = rows[name]["tok_s"] / max(peers)
    batch = min(args.engine_batch, len(prompts))
    mean_context = int(sum(len(p) for p in prompts) / len(prompts) + args.max_new_tokens / 2)
    top = ceilings(lm, engines[fastest].dtype, batch, mean_context)
    accuracy = {d: verdict_changes(items, replies["float32"], res)
                for d, res in replies.items() if d != "float32"}

    print(f"model={args.model} prompts={len(prompts)} max_new_tokens={args.max_new_tokens} "
          f"threads={torch.get_num_threads()} torch={torch.__version__} "
          f"cpu={platform.processor() or platform.machine()} auto dtype="
          f"{NAMES[resolve_dtype('auto', torch.float32, torch.device('cpu'))]}")
    print(f"{'method':<24}{'tok/s':>9}{'seconds':>9}{'vs best generate':>18}")
    for name, r in rows.items():
        print(f"{name:<24}{r['tok_s']:>9.1f}{r['seconds']:>9.1f}"
              f"{r['tok_s'] / hf[best]['tok_s']:>17.2f}x")
    for name in engines:
        r = rows[name]
        print(f"{name}: {r['forward_share']:.0%} of its time in forward passes; forward-only "
              f"{r['forward_only_tok_s']:.1f} tok/s ({r['steps']} steps, peak {r['peak_rows']} rows)"
              + (f"; {same_precision[name]:.2f}x the best {r['dtype']} generate"
                 if name in same_precision else ""))
    print(f"best plain generate: {best}; fastest engine {fastest} / best = "
          f"{rows[fastest]['tok_s'] / hf[best]['tok_s']:.2f}x")
    ceiling = top["decode_ceiling_tok_s"]
    print(f"fixed-batch decode ceiling ({rows[fastest]['dtype']}, batch {batch}, context "
          f"{mean_context}): {ceiling:.1f} tok/s ({fastest} at "
          f"{rows[fastest]['tok_s'] / ceiling:.0%}); bandwidth bound "
          f"{top['bandwidth_bound_tok_s']:.0f} tok/s ({top['bandwidth_gb_s']:.1f} GB/s, "
          f"{top['weight_bytes'] / 1e9:.2f} GB weights)")
    for dtype, sets in accuracy.items():
        for name, a in sets.items():
            print(f"{dtype} vs fp32 on {name} (n={a['n']}): {a['metric']} {a['fp32']:.1%} -> "
                  f"{a['other']:.1%}, verdicts +{a['flips_up']}/-{a['flips_down']}, identical "
                  f"replies {a['identical_replies']}/{a['n']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "prompts": len(prompts), "rows": rows,
                       "best_plain": best, "fastest_engine": fastest,
                       "engine_vs_best": rows[fastest]["tok_s"] / hf[best]["tok_s"],
                       "engine_vs_best_same_precision": same_precision,
                       **top, "accuracy_vs_fp32": accuracy}, f, indent=2)

if __name__ == "__main__":
    main()
