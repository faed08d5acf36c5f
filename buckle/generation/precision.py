"""Which dtype the engine decodes in (the swap itself: `buckle.models.precision.weights_as`).

Why bf16 on some CPUs: a decode step is mostly reading the weights (memory-bound at small
batches) and multiplying them (compute-bound at large ones); bf16 halves the bytes and CPUs with
AVX512-BF16 or AMX multiply it natively. Qwen2.5-0.5B, 2 cores: a 64-row step 575 -> 263 ms,
an 8-row step 311 -> 75 ms (docs/benchmarks.md). The cost: greedy replies are no longer
bit-identical to fp32, and they can depend on which prompts share a batch (bf16 kernels round
differently at different batch sizes). Flags that list AVX512-BF16 are not enough: on an Intel
Xeon VM without AMX the same evaluation decoded 0.69x fp32, so `auto` measures
(`buckle.models.device.cpu_prefers_bf16`). `bench/generation.py` measures how many replies and
judge verdicts change; code that needs exact, batch-independent replies asks for `fp32`.

`int8` (opt-in, x86): the linears run as fbgemm dynamic-int8 copies (`buckle.models.int8`),
for CPUs without native bf16, where it is the only fast path; it changes more replies than bf16
does, so `auto` never picks it (accuracy cost measured in docs/benchmarks.md). It is reported
as the dtype `torch.qint8`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from buckle.models.device import cpu_prefers_bf16, precision_choice
from buckle.models.int8 import linears_as_int8
from buckle.models.precision import weights_as

PRECISION_ENV = "BUCKLE_GENERATION_PRECISION"  # auto | fp32 | bf16 | int8
PRECISIONS = ("auto", "fp32", "bf16", "int8")
INT8 = torch.qint8  # the "dtype" an int8 decode reports


def decode_dtype(model: Any, precision: str | None = None) -> torch.dtype:
    """The dtype to decode `model` in (see `resolve_dtype`)."""
    param = next(model.parameters())
    return resolve_dtype(precision, param.dtype, param.device)


def resolve_dtype(precision: str | None, weights: torch.dtype, device: torch.device
                  ) -> torch.dtype:
    """`precision` (else $BUCKLE_GENERATION_PRECISION, else `auto`) for a model whose weights
    are `weights` on `device`: `fp32` = the model's own dtype, `bf16` = bf16, `int8` = INT8,
    `auto` = bf16 when the weights are fp32 on a CPU where bf16 matmuls are measured faster
    (`cpu_prefers_bf16`), their own dtype otherwise (CUDA models already load in bf16)."""
    choice = precision_choice(precision, PRECISION_ENV, PRECISIONS)
    if choice == "int8":
        return INT8
    if choice == "fp32":
        return weights
    if choice == "bf16":
        return torch.bfloat16
    if weights == torch.float32 and torch.device(device).type == "cpu" and cpu_prefers_bf16():
        return torch.bfloat16
    return weights


@contextmanager
def decoding_in(model: Any, dtype: torch.dtype) -> Iterator[None]:
    """Inside the block `model` computes in `dtype` (a `resolve_dtype` answer); after it, its
    very own weights and modules are back."""
    if dtype == INT8:
        with linears_as_int8(model):
            yield
    else:
        with weights_as(model, dtype):
            yield
