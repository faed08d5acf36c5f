"""Run a model's linear layers as dynamic-int8 copies for a while, and put the originals back.

Why: on a CPU without native bf16 (AVX2 only) a decode step is fp32 matmuls, and fbgemm's
dynamic int8 (weights per output channel, activations quantized per call) runs Qwen2.5-0.5B's
matmuls 2-3x faster at 128 rows (a whole decode step 2,457 -> 913 ms; bench/probes). Which
layers stay in fp32 is an accuracy choice: Qwen's `down_proj` inputs carry outlier channels
that one per-tensor activation scale cannot hold (all linears in int8: 9 of 60 refusal
verdicts changed; `down_proj` kept: 1 of 60, docs/benchmarks.md). LoRA factors stay as they
are: they are tiny, and an adapter under evaluation must be the adapter that was trained.

Quantizing a 0.5B model takes about 8 s here, so the copies are kept per layer and reused while
its weight is the same tensor, unmodified (storage address, in-place version counter and a
sampled checksum all match); a layer whose weight was swapped or trained is quantized again.
The swap is module-level (the parent's attribute), so it holds for every caller inside the
block, and the very same module objects are back after it, even on an exception.

torch marks `torch.ao` quantized tensors deprecated (its successor, torchao, runs int8 through
`torch._int_mm`, measured 30x slower than fp32 on this kind of CPU: bench/probes); the warning
is silenced here until torchao has a fast CPU path, and the test suite will say when it goes.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

KEEP_FP32 = ("down_proj",)  # Qwen-family MLP output: outlier activations (see above)

_copies: weakref.WeakKeyDictionary[torch.nn.Linear, tuple[tuple[Any, ...], torch.nn.Module]] = \
    weakref.WeakKeyDictionary()


def int8_available() -> bool:
    """fbgemm (x86) is the engine behind torch's dynamic int8 linear on CPU."""
    return "fbgemm" in torch.backends.quantized.supported_engines


def _identity(layer: torch.nn.Linear) -> tuple[Any, ...]:
    """What must match for a cached copy to still be this layer's weights."""
    stamp: list[Any] = []
    for t in (layer.weight, layer.bias):
        if t is None:
            stamp.append(None)
            continue
        flat = t.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 64)]
        stamp.append((t.data_ptr(), t._version, tuple(t.shape), float(sample.double().sum())))
    return tuple(stamp)


def _int8_copy(layer: torch.nn.Linear) -> torch.nn.Module:
    from torch.ao.nn.quantized.dynamic import Linear as Int8Linear
    from torch.ao.quantization import per_channel_dynamic_qconfig

    stamp = _identity(layer)
    cached = _copies.get(layer)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    layer.qconfig = per_channel_dynamic_qconfig  # type: ignore[assignment]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions")
            copy = Int8Linear.from_float(layer)
    finally:
        del layer.qconfig
    _copies[layer] = (stamp, copy)
    return copy


def _targets(model: Any, keep: Sequence[str]) -> Iterator[tuple[torch.nn.Module, str,
                                                                 torch.nn.Linear]]:
    """(parent, attribute, layer) for each fp32 nn.Linear to swap: not named in `keep`, not a
    LoRA factor (PEFT keeps those in lora_A / lora_B containers)."""
    for path, parent in model.named_modules():
        if any(part.startswith("lora_") for part in path.split(".")):
            continue
        for name, child in parent.named_children():
            if type(child) is torch.nn.Linear and name not in keep and not name.startswith(
                    "lora_") and child.weight.dtype == torch.float32:
                yield parent, name, child


@contextmanager
def linears_as_int8(model: Any, keep: Sequence[str] = KEEP_FP32) -> Iterator[int]:
    """Inside the block every fp32 `nn.Linear` of `model` except those named in `keep` (and
    LoRA factors) is a dynamic-int8 copy; yields how many were swapped. Inference only: the
    copies have no gradients."""
    if not int8_available():
        raise RuntimeError("int8 decoding needs torch's fbgemm quantized engine (x86 CPUs); "
                           "use precision fp32 or bf16 here")
    swapped: list[tuple[torch.nn.Module, str, torch.nn.Linear]] = []
    try:
        for parent, name, layer in list(_targets(model, keep)):
            copy = _int8_copy(layer)
            setattr(parent, name, copy)
            swapped.append((parent, name, layer))
        yield len(swapped)
    finally:
        for parent, name, layer in swapped:
            setattr(parent, name, layer)
