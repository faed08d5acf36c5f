"""Opt-in int8 decoding: which layers are swapped, that the caller's modules come back, that
copies are reused only while the weights are unchanged, and that a real model still answers
like itself (real SmolLM2, real fbgemm kernels)."""

from __future__ import annotations

import copy

import pytest
import torch

from buckle.data import load_prompts
from buckle.generation import GenerationEngine, SamplingParams, encode_chat
from buckle.generation.precision import INT8, decode_dtype, decoding_in
from buckle.models.device import precision_choice
from buckle.models.int8 import int8_available, linears_as_int8

pytestmark = pytest.mark.skipif(not int8_available(), reason="needs torch's fbgemm engine (x86)")
GREEDY = SamplingParams(max_new_tokens=24)


def _linears(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def test_int8_is_an_engine_choice_only(default_model):
    assert decode_dtype(default_model.model, "int8") == INT8
    # the judges' encoder shares the parser but not the choice
    with pytest.raises(ValueError, match="bf16, got"):
        precision_choice("int8", "BUCKLE_TEST_UNSET_PRECISION")


def test_every_linear_but_down_proj_is_swapped_and_the_same_modules_come_back(default_model):
    model = default_model.model
    before = _linears(model)
    down = [n for n in before if n.endswith("down_proj")]
    assert down
    with pytest.raises(RuntimeError, match="boom"), linears_as_int8(model) as swapped:
        inside = dict(model.named_modules())
        assert swapped == len(before) - len(down)
        for name in before:
            kept = name.endswith("down_proj")
            assert (type(inside[name]) is torch.nn.Linear) == kept, name
        raise RuntimeError("boom")
    after = _linears(model)
    assert after.keys() == before.keys()
    assert all(after[n] is before[n] for n in before)  # the very same objects, even on error


def test_copies_are_reused_until_a_weight_changes(default_model):
    model = copy.deepcopy(default_model.model)
    with linears_as_int8(model):
        first = model.model.layers[0].self_attn.q_proj
        other = model.model.layers[1].self_attn.q_proj
    with linears_as_int8(model):
        assert model.model.layers[0].self_attn.q_proj is first  # no second quantization
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.weight.mul_(2.0)  # trained in place
    with linears_as_int8(model):
        again = model.model.layers[0].self_attn.q_proj
        assert again is not first and model.model.layers[1].self_attn.q_proj is other
        assert torch.allclose(again.weight().dequantize(), 2 * first.weight().dequantize(),
                              rtol=0.02, atol=1e-3)
    model.model.layers[1].self_attn.q_proj.weight.data = \
        model.model.layers[1].self_attn.q_proj.weight.data.clone()  # swapped, as merging does
    with linears_as_int8(model):
        assert model.model.layers[1].self_attn.q_proj is not other


def test_lora_factors_stay_fp32_and_still_change_the_output(default_model):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(copy.deepcopy(default_model.model),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)  # a trained adapter: B is no longer zero
    ids = torch.tensor([encode_chat(default_model.tokenizer,
                                    [{"role": "user", "content": "Name a color."}])])
    with torch.inference_mode(), decoding_in(model, INT8):
        factors = [m for n, m in model.named_modules()
                   if n.endswith((".lora_A.default", ".lora_B.default"))]
        assert factors and all(type(m) is torch.nn.Linear for m in factors)
        with_adapter = model(input_ids=ids).logits
        with model.disable_adapter():
            without = model(input_ids=ids).logits
    assert (with_adapter - without).abs().max() > 1e-3  # the adapter is applied under int8


def test_int8_replies_track_fp32_and_leave_the_weights_untouched(default_model):
    model = default_model.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    texts = [p.prompt for p in load_prompts("advbench", limit=6)]
    texts += [p.prompt for p in load_prompts("chatterbot", limit=6)]
    tok = default_model.tokenizer
    prompts = [encode_chat(tok, [{"role": "user", "content": t}]) for t in texts]
    fp32 = GenerationEngine.from_loaded(default_model, precision="fp32").generate(prompts, GREEDY)
    engine = GenerationEngine.from_loaded(default_model, precision="int8")
    assert engine.dtype == INT8
    int8 = engine.generate(prompts, GREEDY)
    assert all(r.text for r in int8)
    # Quantization noise moves the replies of this fragile 135M model within a few tokens (the
    # first 4 agree on 4 of 12 prompts on the development CPU); a broken int8 path (wrong
    # scales, a lost bias) already differs at the first token, where 10 of 12 agree here (5 of
    # 12 with down_proj in int8 too). The 0.5B reference's verdict changes: bench/generation.py.
    agree = sum(a.token_ids[:1] == b.token_ids[:1] for a, b in zip(fp32, int8, strict=True))
    assert agree >= 2 * len(prompts) // 3, f"only {agree} of {len(prompts)} first tokens agree"
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]), name
    assert all(type(m) is torch.nn.Linear for m in _linears(model).values())
