"""FastDropout: the same distribution as nn.Dropout (rate, scale, independence of the four
chunks of a draw), identity when it should be, and installed on every LoRA layer of a run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from buckle.models import load_model
from buckle.training import TrainingConfig
from buckle.training.dropout import LEVELS, FastDropout, keep_mask
from buckle.training.lora import attached_lora

N = 2_000_000


def test_each_element_is_dropped_at_the_rate_whichever_chunk_of_a_draw_it_came_from() -> None:
    torch.manual_seed(0)
    dropped = ~keep_mask(torch.Size([N]), round(0.05 * LEVELS))
    tolerance = 5 * (0.05 * 0.95 / (N / 4)) ** 0.5  # 5 sigma of a quarter of the elements
    assert dropped.float().mean().item() == pytest.approx(0.05, abs=tolerance / 2)
    for chunk in range(4):  # a dead or biased bit would show in one chunk of each 64-bit draw
        assert dropped[chunk::4].float().mean().item() == pytest.approx(0.05, abs=tolerance)
    neighbours = torch.corrcoef(torch.stack([dropped[:-1].float(), dropped[1:].float()]))[0, 1]
    assert abs(neighbours.item()) < 0.005


def test_kept_elements_are_scaled_like_nn_dropout_and_dropped_ones_are_zero() -> None:
    torch.manual_seed(1)
    layer = FastDropout(0.1).train()
    x = torch.rand(64, 256) + 1.0  # never zero, so a zero means dropped
    y = layer(x)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / (1 - 0.1), rtol=1e-4)
    assert 0.08 < 1 - kept.float().mean().item() < 0.12
    assert layer(torch.ones(1000, 1000)).mean().item() == pytest.approx(1.0, abs=0.003)


def test_gradient_flows_through_kept_elements_only() -> None:
    torch.manual_seed(2)
    x = torch.ones(32, 32, requires_grad=True)
    y = FastDropout(0.3).train()(x)
    y.sum().backward()
    assert torch.equal(x.grad, (y.detach() != 0).float() * FastDropout(0.3).scale)


def test_eval_mode_and_zero_rate_are_the_identity_and_a_bad_rate_is_refused() -> None:
    x = torch.randn(8, 8)
    assert FastDropout(0.5).eval()(x) is x
    assert FastDropout(0.0).train()(x) is x
    for p in (-0.1, 1.0):
        with pytest.raises(ValueError, match="dropout p"):
            FastDropout(p)


def test_the_same_seed_draws_the_same_mask() -> None:
    layer = FastDropout(0.05).train()
    x = torch.randn(16, 576)
    torch.manual_seed(3)
    first = layer(x)
    torch.manual_seed(3)
    assert torch.equal(first, layer(x))


def test_a_training_run_uses_it_on_every_lora_layer_and_the_base_is_left_as_it_was() -> None:
    base = load_model("smollm2-135m-instruct").model
    config = TrainingConfig(lora_r=4, lora_alpha=8, lora_dropout=0.05)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    with attached_lora(base, config) as model:
        layers = [m for m in model.modules() if isinstance(getattr(m, "lora_dropout", None),
                                                           nn.ModuleDict)]
        assert layers  # every adapted projection of every layer
        for m in layers:
            assert [type(d) for d in m.lora_dropout.values()] == [FastDropout]
            assert m.lora_dropout["default"].p == 0.05
    assert not any(isinstance(m, FastDropout) for m in base.modules())
    after = base.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
