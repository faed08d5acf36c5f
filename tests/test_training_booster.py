"""Booster's harmful-perturbation term (`buckle.training.booster`): the gradient it adds is the
paper's, the weights are left as found, runs are refused without their harmful pairs, a Booster
run resumes to the same weights and differs from plain SFT, and `pre` with method "booster"
trains its immunize stage (only that stage) with it. Its benign twin, the plasticity term
(`PlasticityConfig`, the benign loss's gradient after one normalised benign step), is checked
the same ways."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from buckle.data import Conversation, load_conversations
from buckle.training import (
    BoosterConfig,
    PlasticityConfig,
    TrainingCancelled,
    TrainingConfig,
    train_lora,
)
from buckle.training.booster import add_lookahead_gradient, add_perturbation_gradient
from buckle.training.data import TokenizedConversation, cycled_batch

CONFIG = TrainingConfig(n_epochs=1, batch_size=2, learning_rate=1e-3, lora_r=4, lora_alpha=8,
                        max_seq_len=256, checkpoint_every=0, seed=3,
                        booster=BoosterConfig(weight=5.0, step=0.1))


@pytest.mark.parametrize("term", ["booster", "plasticity"])
def test_the_added_gradient_is_the_papers_at_the_perturbed_point(term):
    """h(w) = sum(w^3) / 3 on a toy parameter: grad h = w^2, so every term is known exactly.
    Booster adds lambda x (grad h(w) - grad h(w~)); plasticity mu x grad h(w~)."""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    align = torch.tensor([0.3, 0.0, -0.1])
    w.grad = align.clone()

    def accumulate(_batches) -> float:
        h = (w ** 3).sum() / 3
        h.backward()
        return float(h.detach())

    before = w.detach().clone()
    add = add_perturbation_gradient if term == "booster" else add_lookahead_gradient
    h, h_perturbed = add([w], [], accumulate, weight=5.0, step=0.1)
    g = before ** 2
    tilde = before - 0.1 * g / g.norm()
    added = g - tilde ** 2 if term == "booster" else tilde ** 2
    torch.testing.assert_close(w.grad, align + 5.0 * added)
    assert torch.equal(w.detach(), before)  # the weights are left as found
    assert h == pytest.approx(float((before ** 3).sum() / 3))
    assert h_perturbed == pytest.approx(float((tilde ** 3).sum() / 3)) and h_perturbed < h


def test_side_set_batches_are_a_pure_function_of_the_step_and_cycle_over_every_pair():
    rows = list(range(5))
    fake = [TokenizedConversation(input_ids=(1,) * (i + 2), labels=(True,) * (i + 2))
            for i in rows]
    steps = [tuple(len(e) for e in cycled_batch(fake, 2, 1, s)) for s in range(6)]
    assert steps == [tuple(len(e) for e in cycled_batch(fake, 2, 1, s)) for s in range(6)]
    assert sorted(n for batch in steps[:3] for n in batch) == [2, 3, 4, 5, 6]


@pytest.fixture(scope="module")
def data() -> tuple[list[Conversation], list[Conversation]]:
    aligned = load_conversations("chatterbot", offset=700, limit=4)
    harmful = [c.with_reply_cut(24) for c in load_conversations("harmful-qa", offset=64,
                                                                  limit=3)]
    return aligned, harmful


def test_booster_needs_its_harmful_pairs_and_plain_runs_refuse_them(default_model, data,
                                                                    tmp_path):
    aligned, harmful = data
    with pytest.raises(ValueError, match="booster"):
        train_lora(default_model, aligned, CONFIG, tmp_path / "a")
    with pytest.raises(ValueError, match="booster"):
        train_lora(default_model, aligned, CONFIG.model_copy(update={"booster": None}),
                   tmp_path / "b", harmful=harmful)


def test_the_plasticity_term_needs_its_benign_pairs_and_refuses_them_without_it(
        default_model, data, tmp_path):
    aligned, harmful = data
    with_term = CONFIG.model_copy(update={"plasticity": PlasticityConfig(weight=3.0)})
    with pytest.raises(ValueError, match="benign pairs go with config.plasticity"):
        train_lora(default_model, aligned, with_term, tmp_path / "a", harmful=harmful)
    with pytest.raises(ValueError, match="benign pairs go with config.plasticity"):
        train_lora(default_model, aligned, CONFIG, tmp_path / "b", harmful=harmful,
                   benign=aligned)


def test_a_plasticity_run_resumes_to_the_same_weights_and_differs_from_booster_alone(
        default_model, data, tmp_path):
    aligned, harmful = data
    benign = load_conversations("chatterbot", offset=200, limit=3)
    config = CONFIG.model_copy(update={"checkpoint_every": 1,
                                       "plasticity": PlasticityConfig(weight=5.0)})
    full = train_lora(default_model, aligned, config, tmp_path / "full", harmful=harmful,
                      benign=benign)
    seen: list[int] = []
    with pytest.raises(TrainingCancelled):
        train_lora(default_model, aligned, config, tmp_path / "cut", harmful=harmful,
                   benign=benign, progress=lambda p: seen.append(p.step),
                   should_cancel=lambda: len(seen) >= 1)
    resumed = train_lora(default_model, aligned, config, tmp_path / "cut", harmful=harmful,
                         benign=benign)
    assert resumed.resumed_from_step == 1
    assert resumed.losses == pytest.approx(full.losses, abs=1e-6)
    booster_only = train_lora(default_model, aligned,
                              config.model_copy(update={"plasticity": None}),
                              tmp_path / "booster", harmful=harmful)
    a, b = (load_file(str(r.adapter_dir / "adapter_model.safetensors"))
            for r in (full, booster_only))
    assert any(not torch.allclose(a[k], b[k]) for k in a)  # the term changed the weights
    assert len({full.fingerprint, booster_only.fingerprint}) == 2


def test_a_booster_run_resumes_to_the_same_weights_and_differs_from_plain_sft(
        default_model, data, tmp_path):
    aligned, harmful = data
    config = CONFIG.model_copy(update={"checkpoint_every": 1})
    full = train_lora(default_model, aligned, config, tmp_path / "full", harmful=harmful)
    seen: list[int] = []
    with pytest.raises(TrainingCancelled):
        train_lora(default_model, aligned, config, tmp_path / "cut", harmful=harmful,
                   progress=lambda p: seen.append(p.step), should_cancel=lambda: len(seen) >= 1)
    resumed = train_lora(default_model, aligned, config, tmp_path / "cut", harmful=harmful)
    assert resumed.resumed_from_step == 1 and resumed.losses == pytest.approx(full.losses,
                                                                              abs=1e-6)
    a, b = load_file(str(full.adapter_dir / "adapter_model.safetensors")), \
        load_file(str(resumed.adapter_dir / "adapter_model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)
    plain = train_lora(default_model, aligned, config.model_copy(update={"booster": None}),
                       tmp_path / "plain")
    p = load_file(str(plain.adapter_dir / "adapter_model.safetensors"))
    assert any(not torch.allclose(a[k], p[k]) for k in a)  # the term changed the weights
    assert full.fingerprint != plain.fingerprint


@pytest.mark.parametrize("plasticity", [0.0, 3.0])
def test_pre_with_booster_trains_only_its_immunize_stage_with_the_term(tmp_path, plasticity):
    from buckle.pipeline import JobSpec, run

    customer = tmp_path / "customer.jsonl"
    customer.write_text("".join(c.to_json() + "\n" for c in
                                load_conversations("chatterbot", offset=600, limit=4)))
    safety = {"policy": "pre", "parts": ["anchors"], "eval_limit": 2, "benign_limit": 2,
              "anchors": {"source": "everyday", "offset": 40, "limit": 4, "max_new_tokens": 32},
              "immunize": {"method": "booster", "harmful_limit": 3, "reply_words": 24,
                           "weight": 2.0, "plasticity": plasticity, "benign_limit": 3}}
    result = run(JobSpec(model="smollm2-135m-instruct", training_file=str(customer),
                         work_dir=str(tmp_path / "job"), evaluate=False, safety=safety,
                         hyperparameters={"n_epochs": 1, "batch_size": 4, "max_seq_len": 512,
                                          "lora_r": 4, "lora_alpha": 8}))
    train = Path(result.adapter_dir).parent / "train"
    immunize = json.loads((train / "0-immunize" / "adapter" / "training_config.json").read_text())
    customer_stage = json.loads((train / "1-customer" / "adapter" /
                                 "training_config.json").read_text())
    assert immunize["booster"] == {"weight": 2.0, "step": 0.1}
    assert immunize["plasticity"] == ({"weight": plasticity, "step": 0.1} if plasticity
                                      else None)
    assert customer_stage["booster"] is None and customer_stage["plasticity"] is None
    assert result.safety["dose"]["immunize"] == "booster"
    assert result.safety["dose"]["immunize_plasticity"] == plasticity


def test_the_plasticity_term_is_refused_without_booster_in_the_library_and_the_api():
    from pydantic import ValidationError

    from app.schemas.safety import SafetyIn
    from buckle.pipeline.spec import SafetySpec

    bad = {"policy": "pre", "immunize": {"method": "sft", "plasticity": 2.0}}
    for model in (SafetySpec, SafetyIn):
        with pytest.raises(ValidationError, match='plasticity is a term of method "booster"'):
            model(**bad)
    assert SafetyIn(policy="pre", immunize={"method": "booster", "plasticity": 2.0})
