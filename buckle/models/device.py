"""Pick device and dtype once, so every caller agrees: CUDA + bf16 when present, else CPU + fp32."""

from __future__ import annotations

import torch


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    # fp32 on CPU: bf16 matmuls are slower on most CPUs and greedy outputs drift.
    return torch.float32

