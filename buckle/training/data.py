"""Training data: conversations -> token ids + assistant-only label mask -> length buckets.

Labels. Loss is taken on every assistant turn's tokens, including the end-of-turn token the
chat template puts after each reply (`<|im_end|>` for ChatML; the model must learn to stop), and
on nothing else: not the system/user turns, not the `<|im_start|>assistant\\n` headers, not the
template's newline after `<|im_end|>`. The model's own template is used throughout, the same way
`buckle.curation.perplexity.encode_pair` scores the final reply.

Batching: length bucketing, not packing. Each epoch the conversations are shuffled (seeded by
seed and epoch), cut into chunks of `BUCKET_BATCHES` batches, sorted by length inside a chunk,
split into batches and the batch order shuffled again. Rows of a batch then have similar lengths,
so right-padding wastes little (measured in `bench/training.py`), while every sequence keeps its
own attention window. Padding-free packing would save the last few percent of padding but needs
a varlen attention kernel or a block-diagonal mask (sdpa on CPU would then attend over the whole
pack: quadratic in the pack length, not in each conversation's).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from buckle.data.records import Conversation
from buckle.errors import DatasetFormatError, LineIssue
from buckle.generation.engine import encode_chat, stop_token_ids

Messages = list[dict[str, str]]
BUCKET_BATCHES = 64  # batches per sorted chunk: larger = less padding, less random batches
# Fixed cost of one forward/backward pass, in padded-token equivalents (see `plan_passes`).
PASS_OVERHEAD_TOKENS = 64


@dataclass(frozen=True)
class TokenizedConversation:
    """Token ids of one conversation and which of them are trained on (`labels[i]`)."""

    input_ids: tuple[int, ...]
    labels: tuple[bool, ...]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_labels(self) -> int:
        return sum(self.labels)


@dataclass
class MicroBatch:
    """One forward pass: right-padded ids and the (position -> next token) pairs to score."""

    input_ids: torch.Tensor  # [rows, width], right-padded
    scored: torch.Tensor  # [rows, width - 1] bool: hidden state at (r, c) predicts ids[r, c+1]
    targets: torch.Tensor  # [n_scored] the tokens those positions must predict
    useful_tokens: int  # non-padding tokens in the pass

    @property
    def n_targets(self) -> int:
        return int(self.targets.numel())


def _reply_span(prompt: list[int], upto: list[int], stops: set[int]) -> list[int]:
    """Tokens of one reply: after the generation prompt, through its last end-of-turn token."""
    tail = upto[len(prompt):]
    ends = [i for i, t in enumerate(tail) if t in stops]
    return tail[:ends[-1] + 1] if ends else tail


def _segments_by_text(tokenizer: Any, messages: Messages) -> list[tuple[list[int], bool]]:
    """Fallback for templates whose token ids of a prefix are not a prefix of the whole.

    Renders text instead, checks that each prefix is a text prefix, and tokenizes the pieces
    (context, reply, context, ...) separately; exact for templates whose turns are delimited
    by special tokens, the same compromise `encode_pair` makes.
    """
    render = tokenizer.apply_chat_template
    whole = render(messages, add_generation_prompt=False, tokenize=False)
    cuts: list[tuple[int, bool]] = []  # (text offset where a piece ends, is it a reply)
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or i == 0:
            continue
        head = render(messages[:i], add_generation_prompt=True, tokenize=False)
        upto = render(messages[:i + 1], add_generation_prompt=False, tokenize=False)
        if not (whole.startswith(upto) and upto.startswith(head)):
            raise ValueError("the chat template does not render earlier turns as a prefix of "
                             "the conversation; cannot tell reply tokens from prompt tokens")
        reply_end = len(head) + len(upto[len(head):].rstrip())
        cuts += [(len(head), False), (reply_end, True)]
    pieces, start = [], 0
    for end, is_reply in cuts:
        if end > start:
            ids = list(tokenizer(whole[start:end], add_special_tokens=False)["input_ids"])
            pieces.append((ids, is_reply))
        start = end
    return pieces


def encode_conversation(tokenizer: Any, messages: Messages,
                        stops: set[int] | None = None) -> TokenizedConversation:
    """Token ids under the model's chat template + the assistant-token mask.

    The ids are the template's own tokenization of the whole conversation, cut after the last
    reply's end-of-turn token (what follows it is never predicted, so never fed). An assistant
    turn that opens the conversation has no prompt to answer and counts as context.
    """
    stops = stop_token_ids(tokenizer, None) if stops is None else stops
    full = encode_chat(tokenizer, messages, add_generation_prompt=False)
    labels = [False] * len(full)
    end = 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or i == 0:
            continue
        prompt = encode_chat(tokenizer, messages[:i], add_generation_prompt=True)
        upto = encode_chat(tokenizer, messages[:i + 1], add_generation_prompt=False)
        if full[:len(upto)] != upto or upto[:len(prompt)] != prompt:
            return _from_segments(_segments_by_text(tokenizer, messages))
        reply = _reply_span(prompt, upto, stops)
        labels[len(prompt):len(prompt) + len(reply)] = [True] * len(reply)
        end = len(prompt) + len(reply)
    if not any(labels):
        raise ValueError("conversation has no assistant reply to train on")
    return TokenizedConversation(tuple(full[:end]), tuple(labels[:end]))


def _from_segments(pieces: list[tuple[list[int], bool]]) -> TokenizedConversation:
    ids = [t for piece, _ in pieces for t in piece]
    labels = [is_reply for piece, is_reply in pieces for _ in piece]
    if not any(labels):
        raise ValueError("conversation has no assistant reply to train on")
    return TokenizedConversation(tuple(ids), tuple(labels))


def tokenize_conversations(tokenizer: Any, conversations: Sequence[Conversation],
                           max_seq_len: int) -> list[TokenizedConversation]:
    """Encode every conversation; collect every bad one (1-based position) before failing."""
    if not conversations:
        raise ValueError("no conversations to train on")
    stops = stop_token_ids(tokenizer, None)
    out: list[TokenizedConversation] = []
    issues: list[LineIssue] = []
    for n, conversation in enumerate(conversations, start=1):
        if not isinstance(conversation, Conversation):
            raise TypeError(f"item {n} is a {type(conversation).__name__}, not a Conversation; "
                            "load data with buckle.data.load_conversations")
        try:
            encoded = encode_conversation(tokenizer, conversation.to_messages(), stops)
        except ValueError as exc:
            issues.append(LineIssue(n, str(exc)))
            continue
        if len(encoded) > max_seq_len:
            issues.append(LineIssue(n, f"{len(encoded)} tokens with the model's chat template, "
                                       f"over max_seq_len={max_seq_len}; shorten or split it"))
        out.append(encoded)
    if issues:
        raise DatasetFormatError("training conversations (numbered from 1)", issues)
    return out


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int,
                  epoch: int) -> list[list[int]]:
    """Indices of each optimizer step's conversations for one epoch (length-bucketed).

    A pure function of its arguments, so a resumed run finds its place from the step number
    alone. The count is always ceil(n / batch_size).
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * BUCKET_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: lengths[i])
        batches += [part[j:j + batch_size] for j in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def plan_passes(lengths: Sequence[int], max_tokens: int,
                pass_overhead: int = PASS_OVERHEAD_TOKENS) -> list[list[int]]:
    """Group row indices into forward passes minimising padded tokens + a per-pass overhead.

    Rows are taken in length order, so a pass is a contiguous run of the sorted rows and pads to
    its longest; an exact dynamic programme over the cut points (a step has at most a few hundred
    rows) then picks the cheapest split with every pass within `max_tokens` rows x width. A row
    longer than the budget runs alone. `pass_overhead` (in tokens) keeps short rows together:
    a pass has a fixed cost (kernel launches, small matmuls run below peak) that padding a few
    tokens is cheaper than.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    n = len(order)
    best = [0.0] + [math.inf] * n  # best[j]: cheapest split of the j shortest rows
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        width = lengths[order[j - 1]]  # the widest of any pass ending at row j
        for i in range(j - 1, -1, -1):
            rows = j - i
            if rows > 1 and rows * width > max_tokens:
                break
            cost = best[i] + rows * width + pass_overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    passes, j = [], n
    while j > 0:
        passes.append(order[cut[j]:j])
        j = cut[j]
    return passes[::-1]


def micro_batches(examples: Sequence[TokenizedConversation], pad_id: int,
                  max_tokens: int) -> list[MicroBatch]:
    """One step's conversations as forward passes (see `plan_passes`), collated."""
    plan = plan_passes([len(e) for e in examples], max_tokens)
    return [_collate([examples[i] for i in group], pad_id) for group in plan]


def _collate(rows: list[TokenizedConversation], pad_id: int) -> MicroBatch:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row.input_ids)
        labels[i, :len(row)] = torch.tensor(row.labels)
    scored = labels[:, 1:]
    return MicroBatch(input_ids=ids, scored=scored, targets=ids[:, 1:][scored],
                      useful_tokens=sum(len(r) for r in rows))


def cycled_batch(examples: Sequence[TokenizedConversation], batch_size: int, seed: int,
                 step: int) -> list[TokenizedConversation]:
    """Step `step`'s rows of a side set (Booster's harmful pairs, unlikelihood pairs) that is
    not the epoch's data: the set's own length-bucketed epochs, cycled. A pure function of
    (seed, step), so a resumed run repeats the uninterrupted one's arithmetic."""
    lengths = [len(e) for e in examples]
    n = math.ceil(len(examples) / batch_size)  # batches per epoch (`epoch_batches`' count)
    batches = epoch_batches(lengths, batch_size, seed, step // n)
    return [examples[i] for i in batches[step % n]]
