"""Decode-step attention for grouped-query models on CPU, registered with transformers by name.

Why: a decode step has one query token per row. transformers' `sdpa` path sends it to
`scaled_dot_product_attention(enable_gqa=True)` whenever the mask can be skipped, and on this
CPU that kernel costs 0.6 ms (fp32) to 5.5 ms (bf16) per layer call at 40 rows x 120 keys,
against 0.3 / 0.2 ms for the same attention with the query heads packed onto their key-value
head (measured, docs/benchmarks.md): in bf16 it was 42% of a Qwen2.5-0.5B decode step. Here a
one-token query is always packed (`[rows, kv heads, group, dim]`, no `repeat_kv`), fp32 keeps
SDPA on the packed layout (same kernel and numbers as transformers' own packed path), and bf16
uses two matmuls with an fp32 softmax, which this CPU runs twice as fast as its bf16 SDPA
kernel. Prompts (more than one query token) go to transformers' `sdpa` unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F
from transformers.integrations.sdpa_attention import sdpa_attention_forward

NAME = "buckle_decode"


def decode_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                     value: torch.Tensor, attention_mask: torch.Tensor | None,
                     dropout: float = 0.0, scaling: float | None = None,
                     is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers attention-interface signature; returns `[rows, 1, heads, dim]`."""
    rows, heads, q_len, dim = query.shape
    if (q_len != 1 or kwargs.get("position_bias") is not None or kwargs.get("softcap")
            or heads % key.shape[1]):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    kv_heads = key.shape[1]
    q = query.reshape(rows, kv_heads, heads // kv_heads, dim)  # query head h uses kv head h // g
    scale = scaling if scaling is not None else dim ** -0.5
    if query.dtype == torch.float32:
        out = F.scaled_dot_product_attention(q, key, value, attn_mask=attention_mask, scale=scale)
    else:
        weights = torch.matmul(q, key.transpose(-1, -2)).float() * scale
        if attention_mask is not None:
            weights = (weights.masked_fill(~attention_mask, float("-inf"))
                       if attention_mask.dtype == torch.bool else weights + attention_mask)
        out = torch.matmul(torch.softmax(weights, dim=-1).to(value.dtype), value)
    return out.reshape(rows, heads, 1, dim).transpose(1, 2).contiguous(), None


@cache
def _register() -> None:
    """Once per process: the interfaces are global registries."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, decode_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)  # boolean masks, as for `sdpa`


@contextmanager
def decode_attention_for(model: Any) -> Iterator[None]:
    """Run `model` with `decode_attention` inside the block when it uses `sdpa` (the default);
    any other implementation the caller chose (eager, flash) is left alone. Restored after."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    before = getattr(config, "_attn_implementation", None)
    if before != "sdpa":
        yield
        return
    _register()
    config._attn_implementation = NAME
    try:
        yield
    finally:
        config._attn_implementation = before
