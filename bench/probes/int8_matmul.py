"""Probe (not a benchmark of record): fp32 vs fbgemm dynamic-int8 vs `torch._int_mm` matmuls
at Qwen2.5-0.5B's shapes, one process, 2 threads (results: docs/benchmarks.md).

    flock /tmp/buckle-bench.lock .venv/bin/python bench/probes/int8_matmul.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

SHAPES = ((896, 4864), (4864, 896), (896, 151_936))  # gate/up, down, output head


def ms(fn: Callable[[], object], reps: int = 20) -> float:
    fn()
    fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps * 1000


def main() -> None:
    torch.manual_seed(0)
    for rows in (128, 32):
        for k, n in SHAPES:
            x = torch.randn(rows, k)
            lin = torch.nn.Linear(k, n, bias=False)
            q = quantize_dynamic(torch.nn.Sequential(lin),
                                 {torch.nn.Linear: per_channel_dynamic_qconfig})
            a = torch.randint(-127, 127, (rows, k), dtype=torch.int8)
            wq = torch.randint(-127, 127, (k, n), dtype=torch.int8)
            with torch.inference_mode():
                t32, tq = ms(lambda: lin(x)), ms(lambda: q(x))  # noqa: B023
                ti = ms(lambda: torch._int_mm(a, wq), reps=3)  # noqa: B023
            print(f"rows {rows} {k}x{n}: fp32 {t32:.2f} ms, fbgemm int8 {tq:.2f} ms "
                  f"({t32 / tq:.2f}x), _int_mm {ti:.2f} ms ({t32 / ti:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
