"""Training data: the assistant-only label mask, length buckets, micro-batches (real tokenizer)."""

from __future__ import annotations

import pytest
import torch

from buckle.data import Conversation, Message, load_conversations
from buckle.errors import DatasetFormatError
from buckle.generation import encode_chat
from buckle.models import load_tokenizer
from buckle.training import encode_conversation, epoch_batches, tokenize_conversations
from buckle.training.data import micro_batches

MODEL = "smollm2-135m-instruct"
MULTI_TURN = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Blue."},
    {"role": "user", "content": "Another one?"},
    {"role": "assistant", "content": "Green, like grass."},
]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(MODEL)


def _spans(ids, labels) -> list[list[int]]:
    """Contiguous runs of labelled tokens."""
    runs, current = [], []
    for t, keep in zip(ids, labels):
        if keep:
            current.append(t)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


def test_mask_covers_exactly_each_reply_and_its_end_of_turn_token(tok):
    enc = encode_conversation(tok, MULTI_TURN)
    replies = [tok.decode(span) for span in _spans(enc.input_ids, enc.labels)]
    assert replies == ["Blue.<|im_end|>", "Green, like grass.<|im_end|>"]


def test_ids_are_the_templates_own_tokens_without_the_trailing_newline(tok):
    enc = encode_conversation(tok, MULTI_TURN)
    full = encode_chat(tok, MULTI_TURN, add_generation_prompt=False)
    assert list(enc.input_ids) == full[:len(enc.input_ids)]
    assert tok.decode(full[len(enc.input_ids):]) == "\n"


def test_system_user_and_headers_are_never_labelled(tok):
    enc = encode_conversation(tok, MULTI_TURN)
    context = tok.decode([t for t, keep in zip(enc.input_ids, enc.labels) if not keep])
    for text in ("You are terse.", "Name a colour.", "Another one?", "<|im_start|>assistant"):
        assert text in context
    assert "Blue" not in context and "Green" not in context


def test_default_system_prompt_of_the_template_is_context(tok):
    conv = Conversation.from_pair("Hi there", "Hello!")
    enc = encode_conversation(tok, conv.to_messages())
    text = tok.decode(enc.input_ids)
    assert "You are a helpful AI assistant named SmolLM" in text  # the template's own default
    assert [tok.decode(s) for s in _spans(enc.input_ids, enc.labels)] == ["Hello!<|im_end|>"]


def test_an_opening_assistant_turn_is_context_not_a_target(tok):
    messages = [{"role": "assistant", "content": "How can I help?"},
                {"role": "user", "content": "Say yes."},
                {"role": "assistant", "content": "Yes."}]
    enc = encode_conversation(tok, messages)
    assert [tok.decode(s) for s in _spans(enc.input_ids, enc.labels)] == ["Yes.<|im_end|>"]


def test_too_long_conversations_are_all_reported_with_their_numbers(tok):
    short = Conversation.from_pair("Hi", "Hello")
    long = Conversation.from_pair("word " * 200, "ok")
    with pytest.raises(DatasetFormatError) as err:
        tokenize_conversations(tok, [short, long, short, long], max_seq_len=64)
    assert [i.line for i in err.value.issues] == [2, 4]
    assert "max_seq_len=64" in str(err.value)


def test_empty_or_wrongly_typed_data_is_refused(tok):
    with pytest.raises(ValueError, match="no conversations"):
        tokenize_conversations(tok, [], max_seq_len=64)
    with pytest.raises(TypeError, match="not a Conversation"):
        tokenize_conversations(tok, [{"messages": []}], max_seq_len=64)  # type: ignore[list-item]
    with pytest.raises(ValueError):  # records refuse blank replies before training sees them
        Conversation(messages=(Message(role="user", content="q"),
                               Message(role="assistant", content="  ")))


def test_epoch_batches_cover_every_item_once_and_depend_only_on_seed_and_epoch():
    lengths = [((i * 37) % 50) + 5 for i in range(103)]
    batches = epoch_batches(lengths, 8, seed=1, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(103))
    assert len(batches) == 13 and min(map(len, batches)) == 103 % 8
    assert batches == epoch_batches(lengths, 8, seed=1, epoch=0)
    assert batches != epoch_batches(lengths, 8, seed=1, epoch=1)
    assert batches != epoch_batches(lengths, 8, seed=2, epoch=0)


def test_bucketing_wastes_less_padding_than_random_batches():
    lengths = [40 + (i * 7919) % 400 for i in range(256)]
    padded = sum(len(b) * max(lengths[i] for i in b) for b in epoch_batches(lengths, 8, 0, 0))
    shuffled = torch.randperm(256, generator=torch.Generator().manual_seed(0)).tolist()
    random_padded = sum(8 * max(lengths[i] for i in shuffled[j:j + 8]) for j in range(0, 256, 8))
    assert padded < 0.7 * random_padded
    assert padded < 1.1 * sum(lengths)


def test_micro_batches_respect_the_token_budget_and_score_the_next_labelled_token(tok):
    convs = load_conversations("chatterbot", limit=12)
    examples = tokenize_conversations(tok, convs, max_seq_len=256)
    passes = micro_batches(examples, pad_id=tok.pad_token_id, max_tokens=200)
    assert sum(p.input_ids.shape[0] for p in passes) == 12
    assert all(p.input_ids.numel() <= 200 or p.input_ids.shape[0] == 1 for p in passes)
    assert sum(p.n_targets for p in passes) == sum(e.n_labels for e in examples)
    assert sum(p.useful_tokens for p in passes) == sum(len(e) for e in examples)
    first = passes[0]
    row = first.input_ids[0]
    assert first.targets[:first.scored[0].sum()].tolist() == row[1:][first.scored[0]].tolist()


def test_text_fallback_agrees_with_token_prefixes_on_a_chatml_template(tok):
    from buckle.training.data import _from_segments, _segments_by_text

    by_text = _from_segments(_segments_by_text(tok, MULTI_TURN))
    assert by_text == encode_conversation(tok, MULTI_TURN)


def test_passes_split_off_long_rows_instead_of_padding_short_ones_to_them():
    from buckle.training.data import plan_passes

    assert plan_passes([10, 300, 10, 10], max_tokens=10_000) == [[0, 2, 3], [1]]
    assert plan_passes([50] * 8, max_tokens=1024) == [list(range(8))]  # nothing to gain
    assert plan_passes([50] * 8, max_tokens=200) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert plan_passes([5000, 20], max_tokens=1024) == [[1], [0]]  # too long: runs alone
