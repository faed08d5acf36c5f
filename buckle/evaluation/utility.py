"""Customer utility: did the fine-tune still learn the customer's task?

A hardened adapter that no longer does what the customer trained it for is no product, so every
safety result sits next to a utility figure measured on held-out lines of the customer's own
data (the job's validation file): the mean per-token loss of the reference replies (lower is
better; perplexity = exp(loss)) and the exact-match rate of greedy replies (normalised for case
and surrounding whitespace), with a Wilson CI. Loss sees every line; exact match is the strict
test for tasks with one right answer (a format, a label), and stays 0 for free-text tasks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from buckle.data.records import Conversation
from buckle.evaluation.metrics import proportion_ci


def _normalise(text: str) -> str:
    return " ".join(text.strip().lower().split())


def _reply_cap(tokenizer: Any, conversations: Sequence[Conversation], cap: int) -> int:
    """New tokens a reply needs to be able to match: twice the longest reference plus a margin
    (a reply that equals a reference up to case and spacing is never longer), so a base model
    that rambles on a short-answer task is not decoded to `cap` for a certain miss."""
    longest = max(len(tokenizer.encode(c.response, add_special_tokens=False))
                  for c in conversations)
    return max(1, min(cap, 2 * longest + 8))


def utility(loaded: Any, conversations: Sequence[Conversation], *,
            max_new_tokens: int = 64, engine: Any = None) -> dict[str, Any]:
    """{"n", "loss", "perplexity", "exact_match": {value, ci_low, ci_high, n}} on `conversations`
    (each scored on its final assistant turn given the turns before it)."""
    from buckle.curation.perplexity import response_perplexities
    from buckle.generation import GenerationEngine, SamplingParams

    if not conversations:
        raise ValueError("utility needs at least one held-out conversation")
    ppl = response_perplexities(loaded.model, loaded.tokenizer, list(conversations))
    loss = sum(math.log(p) for p in ppl) / len(ppl)
    engine = engine or GenerationEngine.from_loaded(loaded)
    replies = engine.chat([[m.model_dump() for m in c.prompt_messages] for c in conversations],
                          SamplingParams(max_new_tokens=_reply_cap(loaded.tokenizer,
                                                                   conversations,
                                                                   max_new_tokens)))
    hits = sum(_normalise(r) == _normalise(c.response) for r, c in zip(replies, conversations))
    low, high = proportion_ci(hits, len(conversations))
    return {"n": len(conversations), "loss": round(loss, 4),
            "perplexity": round(math.exp(loss), 3),
            "exact_match": {"value": hits / len(conversations), "ci_low": low, "ci_high": high,
                            "n": len(conversations)}}
