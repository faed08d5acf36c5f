"""Probe (not a benchmark of record): the engine with Qwen's linears swapped for fbgemm
dynamic-int8 copies, some kept in fp32, against the same engine in fp32: speed, identical
replies, refusal verdicts changed item by item (results: docs/benchmarks.md).

    flock /tmp/buckle-bench.lock .venv/bin/python bench/probes/int8_linears.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.ao.nn.quantized.dynamic import Linear as Int8Linear
from torch.ao.quantization import per_channel_dynamic_qconfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from buckle.data import load_prompts
from buckle.evaluation import get_judge
from buckle.generation import GenerationEngine, SamplingParams, encode_chat
from buckle.models import load_model

KEEP_FP32 = ((), ("down_proj",), ("lm_head",), ("down_proj", "lm_head"),
             ("down_proj", "o_proj", "lm_head"))


def main() -> None:
    lm = load_model("qwen2.5-coder-0.5b-instruct")
    items = load_prompts("advbench", limit=30, offset=200) + load_prompts("everyday-dev", limit=30)
    prompts = [encode_chat(lm.tokenizer, [{"role": "user", "content": p.prompt}]) for p in items]
    judge = get_judge("refusal")

    def run() -> tuple[list[Any], list[bool], float]:
        engine = GenerationEngine(lm.model, lm.tokenizer, max_batch_size=128, precision="fp32")
        start = time.time()
        out = engine.generate(prompts, SamplingParams(max_new_tokens=128))
        seconds = time.time() - start
        verdicts = judge.judge([p.prompt for p in items], [r.text for r in out])
        return out, [bool(v.refused) for v in verdicts], sum(len(r.token_ids) for r in out) / seconds

    ref, ref_v, tok_s = run()
    print(f"fp32 {tok_s:.1f} tok/s", flush=True)
    for keep in KEEP_FP32:
        swapped = []
        for parent in lm.model.modules():
            for name, child in list(parent.named_children()):
                if type(child) is torch.nn.Linear and name not in keep:
                    child.qconfig = per_channel_dynamic_qconfig
                    setattr(parent, name, Int8Linear.from_float(child))
                    del child.qconfig
                    swapped.append((parent, name, child))
        try:
            out, verdicts, tok_s = run()
        finally:
            for parent, name, child in swapped:
                setattr(parent, name, child)
        same = sum(a.token_ids == b.token_ids for a, b in zip(ref, out, strict=True))
        flips = sum(a != b for a, b in zip(ref_v, verdicts, strict=True))
        print(f"fp32 kept {keep}: {tok_s:.1f} tok/s, identical {same}/{len(out)}, "
              f"verdicts changed {flips}", flush=True)


if __name__ == "__main__":
    main()
