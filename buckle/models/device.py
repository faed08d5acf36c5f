"""Pick device and dtype once, so every caller agrees: CUDA + bf16 when present, else CPU + fp32."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    # fp32 on CPU: bf16 matmuls are slower on most CPUs and greedy outputs drift.
    return torch.float32



PRECISIONS = ("auto", "fp32", "bf16")


def precision_choice(value: str | None, env: str,
                     choices: tuple[str, ...] = PRECISIONS) -> str:
    """`value`, else the environment variable `env`, else `auto`; one of `choices` (the judges'
    encoder and the generation engine read their precision this one way)."""
    import os

    choice = (value or os.environ.get(env, "") or "auto").strip().lower()
    if choice not in choices:
        raise ValueError(f"precision must be one of {', '.join(choices)}, got {choice!r} "
                         f"(argument or ${env})")
    return choice


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX-BF16, Linux flags).

    There bf16 autocast is several times faster than fp32 (MiniLM encoding 3.7x, LoRA training
    about 2x, docs/benchmarks.md); elsewhere it is emulated and slower, so callers stay in fp32.
    """
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False
