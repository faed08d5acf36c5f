"""Booster's layout (`ImmunizeSpec.layout="merged"`): an adapter merged into the base for a run
computes what PEFT computes with it attached, the base is exactly itself afterwards, two adapters
stack into one PEFT adapter equal to both, and a `pre` job in that layout trains the customer's
LoRA fresh on the immunized model and releases the stack (rank 2r)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file

from buckle.data import load_conversations
from buckle.training import (
    AdapterMismatchError,
    TrainingConfig,
    merged_adapter,
    stack_adapters,
    train_lora,
)


def _random_adapter(base, folder: Path, seed: int, r: int, alpha: int) -> Path:
    """A PEFT adapter with non-zero A and B (PEFT's init_lora_weights=False), unloaded after."""
    torch.manual_seed(seed)
    model = get_peft_model(base, LoraConfig(r=r, lora_alpha=alpha, target_modules="all-linear",
                                            init_lora_weights=False, task_type="CAUSAL_LM"))
    with torch.no_grad():  # PEFT's random B is small; make the adapter move the logits
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.mul_(20)
    model.save_pretrained(str(folder))
    _unload(model, base)
    return folder


def _unload(model, base) -> None:
    model.unload()
    if hasattr(base, "peft_config"):
        del base.peft_config


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


@pytest.fixture(scope="module")
def ids(default_model) -> torch.Tensor:
    return default_model.tokenizer("Tell me how the tides work.", return_tensors="pt").input_ids


def test_a_merged_adapter_computes_as_attached_and_the_base_is_exactly_itself_after(
        default_model, ids, tmp_path):
    base = default_model.model
    adapter = _random_adapter(base, tmp_path / "a", seed=1, r=4, alpha=8)
    plain = _logits(base, ids)
    weights = {n: (p, p.data.clone()) for n, p in base.named_parameters()}
    attached = PeftModel.from_pretrained(base, str(adapter))
    expected = _logits(attached, ids)
    _unload(attached, base)
    effect = (expected - plain).abs().max()
    assert effect > 1.0  # the adapter moves the logits
    with merged_adapter(base, adapter):
        merged = _logits(base, ids)
    # equal up to fp32 summation order: a small fraction of the adapter's own effect
    assert (merged - expected).abs().max() < 0.02 * effect
    assert torch.equal(merged.argmax(-1), expected.argmax(-1))
    for name, p in base.named_parameters():  # the same tensors, with the same values
        assert p is weights[name][0] and torch.equal(p.data, weights[name][1]), name
    torch.testing.assert_close(_logits(base, ids), plain, atol=0, rtol=0)


def test_two_adapters_stack_into_one_peft_adapter_computing_both(default_model, ids, tmp_path):
    base = default_model.model
    first = _random_adapter(base, tmp_path / "first", seed=2, r=4, alpha=8)
    second = _random_adapter(base, tmp_path / "second", seed=3, r=2, alpha=16)
    with merged_adapter(base, first):
        attached = PeftModel.from_pretrained(base, str(second))
        expected = _logits(attached, ids)
        _unload(attached, base)
    stacked = stack_adapters(first, second, tmp_path / "stacked")
    config = json.loads((stacked / "adapter_config.json").read_text())
    assert config["r"] == 6 and config["lora_alpha"] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", "second", "stacked"]
    loaded = PeftModel.from_pretrained(base, str(stacked))
    got = _logits(loaded, ids)
    _unload(loaded, base)
    assert (got - expected).abs().max() < 0.02 * (expected - _logits(base, ids)).abs().max()
    assert torch.equal(got.argmax(-1), expected.argmax(-1))


def test_adapters_of_other_modules_do_not_stack_or_merge(default_model, tmp_path):
    base = default_model.model
    first = _random_adapter(base, tmp_path / "first", seed=4, r=2, alpha=4)
    torch.manual_seed(5)
    model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"],
                                            task_type="CAUSAL_LM"))
    model.save_pretrained(str(tmp_path / "q"))
    _unload(model, base)
    with pytest.raises(AdapterMismatchError, match="different modules"):
        stack_adapters(first, tmp_path / "q", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    state = load_file(str(first / "adapter_model.safetensors"))
    assert state  # the first adapter is untouched by the refusal


def test_training_on_a_merged_adapter_is_its_own_run_and_leaves_the_base_as_it_was(
        default_model, tmp_path):
    base = default_model.model
    immunized = _random_adapter(base, tmp_path / "imm", seed=6, r=4, alpha=8)
    before = {n: p.data.clone() for n, p in base.named_parameters()}
    rows = load_conversations("chatterbot", offset=700, limit=4)
    # fp32: the two first losses are equal in exact arithmetic, and with this random adapter
    # (loss ~20) bf16 rounding moves them apart by up to 10% (measured on an AMX CPU: fp32
    # 20.792 / 20.796; bf16 merged 18.28, PEFT 18.86, fused 20.11), which is not what is tested
    config = TrainingConfig(n_epochs=1, batch_size=2, learning_rate=1e-3, lora_r=4, lora_alpha=8,
                            lora_dropout=0.0, max_seq_len=256, checkpoint_every=0, seed=3,
                            autocast="off")
    on_top = train_lora(default_model, rows, config, tmp_path / "on-top", base_adapter=immunized)
    continued = train_lora(default_model, rows, config, tmp_path / "continued",
                           init_adapter=immunized)
    plain = train_lora(default_model, rows, config, tmp_path / "plain")
    assert len({on_top.fingerprint, continued.fingerprint, plain.fingerprint}) == 3
    # the fresh LoRA (B = 0) starts from the immunized model's loss (no dropout here), not base's
    assert on_top.losses[0] > 2 * plain.losses[0]
    assert on_top.losses[0] == pytest.approx(continued.losses[0], rel=1e-3)
    for name, p in base.named_parameters():
        assert torch.equal(p.data, before[name]), name


def test_pre_in_the_merged_layout_releases_the_stack_of_immunize_and_a_fresh_customer_lora(
        tmp_path):
    from buckle.models import load_model
    from buckle.pipeline import JobSpec, run

    customer = tmp_path / "customer.jsonl"
    customer.write_text("".join(c.to_json() + "\n" for c in
                                load_conversations("chatterbot", offset=600, limit=4)))
    safety = {"policy": "pre", "parts": ["anchors"], "eval_limit": 2, "benign_limit": 2,
              "anchors": {"source": "everyday", "offset": 40, "limit": 4, "max_new_tokens": 32},
              "immunize": {"method": "booster", "layout": "merged", "harmful_limit": 3,
                           "reply_words": 24, "weight": 2.0}}
    result = run(JobSpec(model="smollm2-135m-instruct", training_file=str(customer),
                         work_dir=str(tmp_path / "job"), evaluate=False, safety=safety,
                         hyperparameters={"n_epochs": 1, "batch_size": 4, "max_seq_len": 512,
                                          "lora_r": 4, "lora_alpha": 8}))
    out = Path(result.adapter_dir)
    released = json.loads((out / "adapter_config.json").read_text())
    assert released["r"] == 8  # immunize (4) under the fresh customer LoRA (4)
    train = out.parent / "train"
    immunize = load_file(str(train / "0-immunize" / "adapter" / "adapter_model.safetensors"))
    fresh = load_file(str(train / "1-customer" / "adapter" / "adapter_model.safetensors"))
    stacked = load_file(str(out / "adapter_model.safetensors"))
    key = next(k for k in stacked if k.endswith("lora_A.weight"))
    torch.testing.assert_close(stacked[key], torch.cat([immunize[key], fresh[key]]))
    assert result.safety["dose"]["immunize_layout"] == "merged"
    loaded = load_model("smollm2-135m-instruct", adapter=out)  # loads as one PEFT adapter
    assert loaded.model is not None
