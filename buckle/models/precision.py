"""Hold a model's weights in another dtype for a while, and put the originals back untouched.

Why: decoding (buckle.generation.precision) runs fp32 weights through bf16 matmuls on hardware
that multiplies bf16. Autocast re-casts every frozen weight at every forward pass (it caches
casts of trainable tensors only), which at a small decode batch costs about as much as it saves
(Qwen2.5-0.5B, 8 rows: 311 ms fp32, 302 ms autocast, 75 ms bf16 weights); casting once per call
does not. Casting back would round the fp32 weights, so the original tensors are kept and put
back. (Tried for LoRA training too: bit-identical losses, no speed-up, 4 steps of Qwen in
12.6-13.7 s vs 12.7-12.8 s under autocast; a training step is not dominated by the casts.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch


@contextmanager
def weights_as(model: Any, dtype: torch.dtype,
               params: Iterable[torch.nn.Parameter] | None = None) -> Iterator[None]:
    """Inside the block every floating parameter of `model` (or of `params`) is a `dtype` copy;
    after it, the very same original tensors are back. Costs one cast per block and the copy's
    memory while it runs. Buffers (rotary frequencies) are left alone: transformers casts what
    it reads from them."""
    swapped: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
    try:
        for param in (model.parameters() if params is None else params):
            if param.dtype != dtype and param.is_floating_point():
                swapped.append((param, param.data))
                param.data = param.data.to(dtype)
        yield
    finally:
        for param, original in swapped:
            param.data = original
