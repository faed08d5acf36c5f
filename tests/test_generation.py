"""Generation engine: batching never changes greedy output; per-row sampling is reproducible."""

from __future__ import annotations

import pytest

from buckle.data import load_prompts
from buckle.generation import GenerationEngine, SamplingParams, encode_chat

GREEDY = SamplingParams(max_new_tokens=24)


@pytest.fixture(scope="module")
def prompt_ids(default_model):
    # Mixed lengths (harmful + benign) so batches really are left-padded.
    texts = [p.prompt for p in load_prompts("advbench", limit=6)]
    texts += [p.prompt for p in load_prompts("chatterbot", limit=6)]
    return [encode_chat(default_model.tokenizer, [{"role": "user", "content": t}]) for t in texts]


def test_greedy_batched_equals_greedy_sequential_token_for_token(engine, prompt_ids):
    assert len({len(p) for p in prompt_ids}) > 3, "prompts must differ in length"
    batched = engine.generate(prompt_ids, GREEDY)
    sequential = [engine.generate([p], GREEDY)[0] for p in prompt_ids]
    for i, (b, s) in enumerate(zip(batched, sequential)):
        assert b.token_ids == s.token_ids, f"prompt {i} differs"
        assert b.finish_reason == s.finish_reason


def test_engine_matches_plain_transformers_generate(default_model, engine, prompt_ids):
    import torch

    ids = prompt_ids[0]
    with torch.inference_mode():
        ref = default_model.model.generate(torch.tensor([ids]), max_new_tokens=24,
                                           do_sample=False)[0, len(ids):].tolist()
    stop = set(engine.stop_ids.tolist())
    cut = next((i for i, t in enumerate(ref) if t in stop), len(ref))
    assert engine.generate([ids], GREEDY)[0].token_ids == ref[:cut]


def test_small_batches_give_the_same_results_in_input_order(default_model, prompt_ids):
    big = GenerationEngine.from_loaded(default_model, max_batch_size=64)
    small = GenerationEngine.from_loaded(default_model, max_batch_size=3)
    assert [r.token_ids for r in big.generate(prompt_ids, GREEDY)] == \
        [r.token_ids for r in small.generate(prompt_ids, GREEDY)]


def test_requests_in_flight_are_capped_by_distinct_prompts_and_by_tokens(default_model,
                                                                         prompt_ids):
    # The row cap counts distinct prompts: a curation grid (25 requests per prompt) starts as
    # one physical row per prompt and must not be split. The token budget counts every request.
    by_length = sorted(prompt_ids, key=len)
    a, b, c = by_length[0], by_length[1], by_length[-1]  # shortest prompts are admitted first
    params = [SamplingParams(max_new_tokens=4)] * 51
    grid = [a] * 25 + [b] * 25
    two = GenerationEngine.from_loaded(default_model, max_batch_size=2)
    reference = [r.token_ids for r in two.generate(grid + [c], params)]
    assert two.stats.prefills == 2 and two.stats.peak_requests == 50  # c waits for a group
    two.generate(grid, params[:50])
    assert two.stats.prefills == 1 and two.stats.peak_requests == 50
    cap = 12 * (min(len(a), len(b)) + 4)
    tight = GenerationEngine.from_loaded(default_model, max_batch_size=8, max_batch_tokens=cap)
    out = tight.generate(grid + [c], params)
    assert 1 < tight.stats.peak_requests <= 12 and tight.stats.prefills > 4
    assert [r.token_ids for r in out] == reference  # in input order, whatever the admission


def test_queued_prompts_join_a_running_batch_and_sample_as_if_alone(default_model, engine,
                                                                    prompt_ids):
    # Continuous batching: with room for 2 prompts, the others join as soon as a short request
    # finishes, while the long ones are still decoding; their caches (different widths) are
    # merged by left padding. Every sample must still equal its solo run.
    prompts = [prompt_ids[i] for i in (0, 5, 7, 9, 11)]
    first = min(range(len(prompts)), key=lambda i: len(prompts[i]))
    params = [SamplingParams(max_new_tokens=3 if i == first else 14, temperature=0.8,
                             top_p=0.9, seed=i) for i in range(len(prompts))]
    small = GenerationEngine.from_loaded(default_model, max_batch_size=2)
    together = small.generate(prompts, params)
    assert small.stats.joins >= 1, "no prompt joined a running batch; the test proves nothing"
    alone = [engine.generate([p], q)[0] for p, q in zip(prompts, params)]
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]
    assert [r.finish_reason for r in together] == [r.finish_reason for r in alone]
    batchwise = GenerationEngine.from_loaded(default_model, max_batch_size=2, continuous=False)
    assert [r.token_ids for r in batchwise.generate(prompts, params)] == \
        [r.token_ids for r in alone]
    assert batchwise.stats.joins == 0 and batchwise.stats.prefills == 3  # 2 + 2 + 1 prompts


def test_per_row_sampling_params_in_one_batch(engine, prompt_ids):
    p = prompt_ids[1]
    grid = [SamplingParams(max_new_tokens=16, temperature=t, top_p=tp, seed=7)
            for t in (0.0, 0.7, 1.3) for tp in (0.5, 1.0)]
    together = engine.generate([p] * len(grid), grid)
    alone = [engine.generate([p], g)[0] for g in grid]
    # A row's sample depends only on its own params and seed, not on its batch neighbours.
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]
    assert len({tuple(r.token_ids) for r in together}) >= 3, "sampling grid gave no variety"


def test_repeated_prompts_are_prefilled_once_and_sample_as_if_alone(engine, prompt_ids):
    # Two prompts of different lengths, each sampled 3 times, interleaved: the engine prefills
    # 2 unique rows and expands their KV by index; every sample must equal its solo run.
    a, b = prompt_ids[3], prompt_ids[8]
    prompts = [a, b, a, b, a, b]
    params = [SamplingParams(max_new_tokens=12, temperature=0.9, top_p=0.9, seed=s)
              for s in range(6)]
    together = engine.generate(prompts, params)
    alone = [engine.generate([p], q)[0] for p, q in zip(prompts, params)]
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]
    assert [r.prompt_tokens for r in together] == [len(p) for p in prompts]


def test_rows_with_identical_histories_are_decoded_once_until_they_diverge(engine, prompt_ids):
    # The paper grid at low temperature / top-p: many rows draw the same tokens for a while.
    # They share one physical row (one set of logits) and fork only when their draws differ;
    # every sample must still equal its solo run, with fewer rows computed than requested.
    p = prompt_ids[4]
    grid = [SamplingParams(max_new_tokens=16, temperature=t, top_p=tp, seed=s)
            for s, (t, tp) in enumerate((t, tp) for t in (0.0, 0.2, 1.0) for tp in (0.2, 1.0))]
    computed: list[int] = []
    handle = engine.model.register_forward_pre_hook(
        lambda _m, args, kwargs: computed.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    try:
        together = engine.generate([p] * len(grid), grid)
    finally:
        handle.remove()
    alone = [engine.generate([p], g)[0] for g in grid]
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]
    assert computed[0] == 1  # one prefill for the six rows
    decode = computed[1:]
    assert max(decode) <= len({tuple(r.token_ids) for r in together})
    assert sum(decode) < sum(len(r.token_ids) for r in together)  # less than row-by-row


def test_same_seed_same_sample_different_seed_differs(engine, prompt_ids):
    p = prompt_ids[2]
    a = engine.generate([p], SamplingParams(max_new_tokens=20, temperature=1.0, seed=1))[0]
    b = engine.generate([p], SamplingParams(max_new_tokens=20, temperature=1.0, seed=1))[0]
    c = engine.generate([p], SamplingParams(max_new_tokens=20, temperature=1.0, seed=2))[0]
    assert a.token_ids == b.token_ids
    assert a.token_ids != c.token_ids


def test_stops_on_eos_and_reports_length_limit(engine, default_model):
    short = encode_chat(default_model.tokenizer,
                        [{"role": "user", "content": "Reply with just the word: yes"}])
    res = engine.generate([short], SamplingParams(max_new_tokens=40))[0]
    assert res.finish_reason == "stop" and len(res.token_ids) < 40
    assert not set(res.token_ids) & set(engine.stop_ids.tolist())
    cut = engine.generate([short], SamplingParams(max_new_tokens=1))[0]
    assert cut.finish_reason in {"length", "stop"} and len(cut.token_ids) <= 1


def test_top_p_keeps_the_nucleus_only():
    import torch

    from buckle.generation.sampling import top_p_filter

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.5, 0.3, 0.15, 0.05]]))
    out = top_p_filter(logits, torch.tensor([0.7, 1.0]))
    assert torch.isinf(out[0, 2:]).all() and torch.isfinite(out[0, :2]).all()
    assert torch.isfinite(out[1]).all()


def test_chat_with_a_lora_adapter_applied(default_model, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    from buckle.models import load_model

    lm = load_model("smollm2-135m-instruct")
    peft_model = get_peft_model(lm.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                     init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    with_adapter = load_model("smollm2-135m-instruct", adapter=tmp_path / "adapter")
    convo = [[{"role": "user", "content": "Name a colour."}]]
    eng = GenerationEngine.from_loaded(with_adapter)
    text = eng.chat(convo, SamplingParams(max_new_tokens=12))
    base = GenerationEngine.from_loaded(default_model).chat(convo, SamplingParams(max_new_tokens=12))
    assert isinstance(text[0], str)
    # random (non-zero) LoRA weights must change what the model says
    assert text != base
    assert isinstance(with_adapter.model.base_model, torch.nn.Module)
