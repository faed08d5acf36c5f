"""Forward a batch whose rows share a prefix: run the prefix once, copy its KV, batch the tails.

Both generation (the chat template's system prompt opens every row) and curation's perplexity
scoring (many candidate responses to one prompt) pay mostly for the same leading tokens, so the
layout lives here once: `[prefix | pad | tail]`, with position ids derived from the mask so each
row sees exactly the positions it would see alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache


@dataclass
class PrefixBatch:
    logits: torch.Tensor  # [rows, logits_to_keep, vocab]
    mask: torch.Tensor  # [rows, shared + width]
    positions: torch.Tensor  # [rows, width]
    tail_ids: torch.Tensor  # [rows, width], left-padded
    shared: int
    cache: Any | None


def common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    first, n = seqs[0], min(len(s) for s in seqs)
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in seqs):
            return i
    return n


def forward_shared_prefix(
    model: Any,
    rows: Sequence[Sequence[int]],
    *,
    pad_id: int,
    cache_kw: str,
    device: torch.device,
    max_shared: int,
    logits_to_keep: int,
    min_shared: int = 4,
    keep_cache: bool = False,
    new_cache: Callable[[], Any] = DynamicCache,
) -> PrefixBatch:
    """One forward over `rows`; the shared prefix (at most `max_shared` tokens, and only if at
    least `min_shared` long — shorter ones cost a pass for nothing) runs once. `new_cache`
    makes the KV cache (the engine's decodes on, `kv_cache.HeadroomCache`)."""
    shared = common_prefix_len(rows) if len(rows) > 1 else 0
    shared = min(shared, max_shared)
    if shared < min_shared:
        shared = 0
    cache = new_cache() if (shared or keep_cache) else None
    if shared:
        head = torch.tensor([list(rows[0][:shared])], device=device)
        model(input_ids=head, attention_mask=torch.ones_like(head),
              position_ids=torch.arange(shared, device=device).unsqueeze(0),
              use_cache=True, logits_to_keep=_last(1, shared, device), **{cache_kw: cache})
        cache.batch_repeat_interleave(len(rows))
    tails = [list(r[shared:]) for r in rows]
    width = max(len(t) for t in tails)
    ids = torch.full((len(tails), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(tails), shared + width), dtype=torch.long)
    mask[:, :shared] = 1
    for i, t in enumerate(tails):
        ids[i, width - len(t):] = torch.tensor(t)
        mask[i, shared + width - len(t):] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
    kwargs: dict[str, Any] = {"use_cache": cache is not None}
    if cache is not None:
        kwargs[cache_kw] = cache
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                   logits_to_keep=_last(logits_to_keep, width, device), **kwargs).logits
    return PrefixBatch(logits=logits, mask=mask, positions=positions, tail_ids=ids,
                       shared=shared, cache=cache)


def _last(keep: int, width: int, device: torch.device) -> int | torch.Tensor:
    """The last `keep` positions as an index tensor (0 = all, as transformers reads it).

    Why not the int transformers takes: it slices the hidden states as a strided view, and torch's
    CPU bf16 matmul turns a strided [rows, 1, hidden] x lm_head into a batched product with the
    head copied per row (64 rows x Qwen's 151,936 x 896 head: a 17 GB copy, 45 s; 128 rows: a
    failed 35 GB allocation and a slow fallback). Indexing copies the rows into a contiguous one.
    """
    if keep <= 0:
        return keep
    return torch.arange(max(width - keep, 0), width, device=device)
