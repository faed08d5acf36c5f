"""Response perplexity: only response tokens count; batching, prefix sharing and dedupe are exact."""

from __future__ import annotations

import math

import pytest
import torch

from buckle.curation import encode_pair, response_perplexities
from buckle.curation.perplexity import _plan
from buckle.data.records import Conversation

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
BREAD = [{"role": "user", "content": "How do I bake bread at home?"}]
PARIS = "The capital of France is Paris."
SHUFFLED = "Paris France capital of is The."
PAIRS = [
    (FRANCE, PARIS),
    (BREAD, ("Mix flour, water, yeast and salt, knead the dough for ten minutes, let it rise "
             "for an hour, shape it, then bake at 220 C for about 35 minutes.")),
    (FRANCE, "Paris."),
    ("Name a primary colour.", "Red is a primary colour, along with blue and yellow."),
    ([{"role": "user", "content": "Hi!"},
      {"role": "assistant", "content": "Hello! How can I help?"},
      {"role": "user", "content": "Tell me a fun fact."}],
     "Octopuses have three hearts and blue blood."),
    (BREAD, "Use an oven. Be careful: the tray is hot, so wear oven mitts."),
]
CUSTOM_SYSTEM = ([{"role": "system", "content": "Answer briefly."}] + FRANCE, PARIS)


def _ppl(model, pairs, **kw):
    return response_perplexities(model.model, model.tokenizer, pairs, **kw)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def test_chatml_assistant_turn_renders_as_content_then_im_end(default_model):
    tok = default_model.tokenizer
    prompt = tok.apply_chat_template(FRANCE, add_generation_prompt=True, tokenize=False)
    full = tok.apply_chat_template(FRANCE + [{"role": "assistant", "content": PARIS}],
                                   add_generation_prompt=False, tokenize=False)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert full == prompt + PARIS + "<|im_end|>\n"
    ids, plen = encode_pair(tok, FRANCE, PARIS)
    assert tok.decode(ids[plen:]) == PARIS + "<|im_end|>"  # the trailing "\n" is not scored
    assert tok.decode(ids[:plen]) == prompt


def test_equals_exp_mean_nll_of_a_plain_masked_forward_pass(default_model):
    tok, model = default_model.tokenizer, default_model.model
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    pairs = [PAIRS[0], PAIRS[1], PAIRS[4]]
    for (context, response), got in zip(pairs, _ppl(default_model, pairs)):
        messages = [{"role": "user", "content": context}] if isinstance(context, str) else context
        prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        full = tok.apply_chat_template(messages + [{"role": "assistant", "content": response}],
                                       add_generation_prompt=False, tokenize=False)
        ids = tok(full, add_special_tokens=False, return_tensors="pt")["input_ids"]
        n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
        last = max(i for i, t in enumerate(ids[0].tolist()) if t == im_end)
        labels = torch.full_like(ids, -100)
        labels[0, n_prompt:last + 1] = ids[0, n_prompt:last + 1]
        with torch.inference_mode():
            loss = model(input_ids=ids, labels=labels).loss
        assert _rel(got, math.exp(float(loss))) < 1e-4


@pytest.mark.parametrize("extra", [[], [CUSTOM_SYSTEM]], ids=["shared-prefix", "no-prefix"])
def test_batched_equals_one_at_a_time(default_model, extra):
    pairs = PAIRS + extra
    single = [_ppl(default_model, [p])[0] for p in pairs]
    for budget in (10**6, 160):  # one batch; several small batches
        batched = _ppl(default_model, pairs, batch_tokens=budget)
        for i, (b, s) in enumerate(zip(batched, single)):
            assert _rel(b, s) < 1e-4, f"pair {i}: batched {b} vs single {s}"
    reversed_ = _ppl(default_model, pairs[::-1])
    assert all(_rel(a, b) < 1e-4 for a, b in zip(reversed_[::-1], single))  # input order kept


def test_conversations_are_accepted(default_model):
    conv = Conversation.from_pair(FRANCE[0]["content"], PARIS)
    assert _rel(_ppl(default_model, [conv])[0], _ppl(default_model, [(FRANCE, PARIS)])[0]) < 1e-6


def test_fluent_reply_beats_shuffled_words(default_model):
    fluent, shuffled = _ppl(default_model, [(FRANCE, PARIS), (FRANCE, SHUFFLED)])
    assert fluent < shuffled


def test_conditional_on_the_query_and_scores_only_the_response(default_model):
    on_topic, off_topic, other = _ppl(default_model, [(FRANCE, PARIS), (BREAD, PARIS),
                                                      (FRANCE, "Paris.")])
    assert on_topic != other  # changing the response changes PPL
    assert _rel(on_topic, off_topic) > 1e-3  # the same response after another query differs
    assert on_topic < off_topic  # ... and is likelier after the question it answers


def test_duplicates_are_scored_once(default_model):
    rows: list[int] = []

    def count(_module, _args, kwargs):
        rows.append(int(kwargs["input_ids"].numel()))

    handle = default_model.model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        unique = _ppl(default_model, PAIRS[:2])
        tokens_unique = sum(rows)
        rows.clear()
        conv = Conversation.from_pair(FRANCE[0]["content"], PARIS)
        dup = _ppl(default_model, [PAIRS[0], PAIRS[1], PAIRS[0], conv, PAIRS[0]])
        tokens_dup = sum(rows)
    finally:
        handle.remove()
    assert tokens_dup == tokens_unique
    assert dup[0] == dup[2] == dup[3] == dup[4] == unique[0] and dup[1] == unique[1]


def test_empty_input_and_too_long_sequence(default_model):
    assert _ppl(default_model, []) == []
    with pytest.raises(ValueError, match="context window"):
        _ppl(default_model, [(FRANCE, "word " * 10_000)])


def test_plan_respects_token_budget_and_covers_every_index():
    lengths = [5, 40, 12, 12, 90, 3, 60, 7]
    batches = _plan(lengths, batch_tokens=100, max_batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 100
    assert _plan([500], batch_tokens=100, max_batch_size=8) == [[0]]  # too long: runs alone


def test_plan_cuts_where_padding_costs_more_than_a_pass():
    # 30 short candidates and 3 long ones: one batch would pad the 30 short rows to width 100
    # (3,300 tokens computed); two batches compute 300 + 300 tokens for one extra pass.
    lengths = [10] * 30 + [100] * 3
    batches = _plan(lengths, batch_tokens=10_000, max_batch_size=64)
    assert sorted(map(sorted, batches)) == [list(range(30)), [30, 31, 32]]
    # ...but near-equal lengths are not split: the saved padding would not pay for a pass
    assert len(_plan([40, 41, 42, 43], batch_tokens=10_000, max_batch_size=64)) == 1
