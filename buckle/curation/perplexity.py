"""Perplexity of a response given its query, under a model: CTRL's curation objective.

PPL = exp(mean NLL over the *response tokens only*): the assistant content plus the end-of-turn
token the chat template puts after it (`<|im_end|>` for ChatML). The prompt (system + user turns
+ the assistant header, i.e. the template with add_generation_prompt=True) is context, never
scored, so the value is conditional on the query. The template's trailing newline after
`<|im_end|>` is not scored either: the model never has to predict it during generation.

Speed, because curation scores thousands of candidates per round:
- duplicates (same context, same response) are scored once;
- requests are sorted by length and packed into batches bounded by a token budget (rows x width);
- batches are left-padded so every row ends in the last column; the model then computes logits
  only for the last (longest response + 1) columns (`logits_to_keep`), never for whole prompts;
- the prefix every row of a batch shares (at least the system prompt) is run once and its KV
  cache copied to each row, as in `GenerationEngine._prefill`.
Position ids come from the attention mask, so padding and prefix sharing change no row's values
(tested: batched == one-at-a-time within float tolerance).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from buckle.data.records import Conversation
from buckle.generation.engine import cache_argument_name, encode_chat, stop_token_ids
from buckle.generation.prefill import forward_shared_prefix

Messages = list[dict[str, str]]
Pair = tuple[Messages | str, str]
MIN_SHARED_PREFIX = 4  # below this, a separate prefix pass costs more than it saves
# Default rows x width per forward pass. On CPU a pass is compute-bound, so bigger batches only
# add memory traffic (one noisy measurement, SmolLM2-135M on 2 cores, 64 x 140 tokens: 24-33 s
# for 1024-4096, 68 s for 8192); an accelerator needs far larger batches to fill up.
CPU_BATCH_TOKENS, ACCELERATOR_BATCH_TOKENS = 2048, 16384


def _as_pair(item: Pair | Conversation) -> tuple[Messages, str]:
    if isinstance(item, Conversation):
        return [{"role": m.role, "content": m.content} for m in item.prompt_messages], item.response
    context, response = item
    if isinstance(context, str):
        context = [{"role": "user", "content": context}]
    return [{"role": m["role"], "content": m["content"]} for m in context], response


def encode_pair(tokenizer: Any, messages: Messages, response: str,
                stop_ids: set[int] | None = None) -> tuple[list[int], int]:
    """(token ids of prompt + response, prompt length). Scored tokens are ids[prompt_len:].

    The full conversation is rendered by the template, so the response is tokenized exactly as
    training will see it; everything after the last end-of-turn token (ChatML's trailing "\\n")
    is cut. If a template tokenizes the assistant header differently inside a full conversation
    (the prompt is then not a token prefix), fall back to prompt ids + the response's text tail.
    """
    stop_ids = stop_token_ids(tokenizer, None) if stop_ids is None else stop_ids
    prompt = encode_chat(tokenizer, messages, add_generation_prompt=True)
    full = encode_chat(tokenizer, messages + [{"role": "assistant", "content": response}],
                       add_generation_prompt=False)
    if full[:len(prompt)] != prompt:
        render = tokenizer.apply_chat_template
        head = render(messages, add_generation_prompt=True, tokenize=False)
        whole = render(messages + [{"role": "assistant", "content": response}],
                       add_generation_prompt=False, tokenize=False)
        if not whole.startswith(head):
            raise ValueError("chat template does not render the prompt as a prefix of the "
                             "conversation; cannot tell response tokens from prompt tokens")
        full = prompt + list(tokenizer(whole[len(head):], add_special_tokens=False)["input_ids"])
    tail = full[len(prompt):]
    ends = [i for i, t in enumerate(tail) if t in stop_ids]
    if ends:
        tail = tail[:ends[-1] + 1]
    if not tail:
        raise ValueError("response renders to no tokens")
    return prompt + tail, len(prompt)


# What one extra forward pass costs, in padded tokens: a pass reads every weight once (~0.1 s
# for SmolLM2-135M on 2 CPU cores, the time of ~40 tokens of compute) and runs its own prefix.
PASS_COST_TOKENS = 48


def _plan(lengths: Sequence[int], batch_tokens: int, max_batch_size: int,
          pass_cost: int = PASS_COST_TOKENS) -> list[list[int]]:
    """Length-sorted batches, each within `batch_tokens` (rows x padded width), cut where the
    padding they save outweighs the cost of another pass.

    A greedy fill pads short rows up to the longest row of their batch; on curation candidates
    (20-130 tokens) that was ~40% of the tokens computed. This picks the cuts that minimise
    padded tokens + `pass_cost` per batch (dynamic programming over the sorted lengths).
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    n = len(order)
    best = [0.0] + [math.inf] * n  # best[j]: cheapest plan for the j shortest rows
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        width = lengths[order[j - 1]]  # ascending: the widest row of batch (i, j]
        for i in range(j - 1, max(-1, j - 1 - max_batch_size), -1):
            rows = j - i
            if rows > 1 and rows * width > batch_tokens:
                break  # a row longer than the budget still runs alone
            cost = best[i] + rows * width + pass_cost
            if cost < best[j]:
                best[j], cut[j] = cost, i
    batches: list[list[int]] = []
    j = n
    while j > 0:
        batches.append(order[cut[j]:j])
        j = cut[j]
    return batches[::-1]


@torch.inference_mode()
def _score_batch(model: Any, rows: list[list[int]], prompt_lens: list[int], pad_id: int,
                 device: torch.device, cache_kw: str) -> list[tuple[float, int]]:
    """(sum of response-token NLL, response token count) per row."""
    resp_lens = [len(r) - p for r, p in zip(rows, prompt_lens)]
    keep = max(resp_lens) + 1  # logits at column c predict the token at column c + 1
    # The prefix must end before the first position whose logits are needed (prompt_len - 1).
    batch = forward_shared_prefix(model, rows, pad_id=pad_id, cache_kw=cache_kw, device=device,
                                  max_shared=min(prompt_lens) - 1, logits_to_keep=keep,
                                  min_shared=MIN_SHARED_PREFIX)
    logits, ids, width = batch.logits, batch.tail_ids, batch.tail_ids.shape[1]
    out = []
    for i, n in enumerate(resp_lens):  # per row: only its n scored positions go to float32
        row_logits = logits[i, keep - 1 - n:keep - 1].float()
        nll = F.cross_entropy(row_logits, ids[i, width - n:], reduction="sum")
        out.append((float(nll), n))
    return out


def response_perplexities(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[Pair] | Sequence[Conversation],
    *,
    batch_tokens: int | None = None,
    max_batch_size: int = 64,
    device: torch.device | str | None = None,
) -> list[float]:
    """Perplexity of each response given its context, in input order.

    `pairs` holds `(context, response)` tuples, context being chat messages (or a bare user
    string), or `Conversation`s (context = every turn before the final reply). `batch_tokens`
    bounds rows x padded width per forward pass (a longer single sequence runs alone); it also
    bounds the logits kept, rows x (longest response + 1) x vocabulary. None = 2048 on CPU,
    16384 elsewhere.
    Sequences longer than the model's context window raise ValueError rather than being
    silently truncated, which would score a different text.
    """
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    if batch_tokens is None:
        batch_tokens = CPU_BATCH_TOKENS if dev.type == "cpu" else ACCELERATOR_BATCH_TOKENS
    if batch_tokens < 1 or max_batch_size < 1:
        raise ValueError("batch_tokens and max_batch_size must be >= 1")
    stops = stop_token_ids(tokenizer, model)
    pad = tokenizer.pad_token_id
    pad_id = pad if pad is not None else min(stops)
    limit = int(getattr(getattr(model, "config", None), "max_position_embeddings", 0) or 0)

    index: dict[str, int] = {}  # dedupe: canonical (context, response) -> unique slot
    slots: list[int] = []
    rows: list[list[int]] = []
    prompt_lens: list[int] = []
    for n, item in enumerate(pairs):
        messages, response = _as_pair(item)
        key = json.dumps([messages, response], ensure_ascii=False)
        if key not in index:
            ids, plen = encode_pair(tokenizer, messages, response, stops)
            if limit and len(ids) > limit:
                raise ValueError(f"pair {n}: {len(ids)} tokens exceed the model's context "
                                 f"window of {limit}; shorten the query or the response")
            index[key] = len(rows)
            rows.append(ids)
            prompt_lens.append(plen)
        slots.append(index[key])

    results: list[float] = [math.nan] * len(rows)
    cache_kw = cache_argument_name(model)
    for batch in _plan([len(r) for r in rows], batch_tokens, max_batch_size):
        scored = _score_batch(model, [rows[i] for i in batch], [prompt_lens[i] for i in batch],
                              pad_id, dev, cache_kw)
        for i, (total, count) in zip(batch, scored):
            results[i] = math.exp(total / count)
    return [results[s] for s in slots]
