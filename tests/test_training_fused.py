"""The fused LoRA training forward: LoRA's arithmetic and gradients (fp32 against PEFT's own
forward and autograd, bf16 as close to fp32 as PEFT's bf16), dropout through the multiplier of
the same seed, and PEFT's forward wherever the fused one does not apply."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from buckle.models import load_model
from buckle.training import TrainingConfig
from buckle.training.dropout import dropout_multiplier
from buckle.training.fused_lora import use_fused_lora
from buckle.training.lora import attached_lora


def _layer(dropout: float, bias: bool = True, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = get_peft_model(nn.Sequential(nn.Linear(24, 16, bias=bias)),
                           LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout,
                                      target_modules=["0"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:  # PEFT starts B at zero, which would hide the LoRA path
            p.data.normal_(0, 0.5)
    return model


def _lora_parts(model: nn.Module) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    layer = next(m for m in model.modules() if hasattr(m, "lora_A"))
    return layer, layer.lora_A["default"].weight, layer.lora_B["default"].weight


def test_fp32_output_and_gradients_equal_peft_without_dropout() -> None:
    x = torch.randn(3, 5, 24, requires_grad=True)
    results = []
    for fused in (False, True):
        model = _layer(0.0)
        if fused:
            assert use_fused_lora(model) == 1
        model.train()
        x.grad = None
        y = model(x)
        (y ** 2).sum().backward()
        _, a, b = _lora_parts(model)
        results.append((y.detach(), x.grad.clone(), a.grad.clone(), b.grad.clone()))
    for peft_value, fused_value in zip(*results, strict=True):
        assert torch.allclose(peft_value, fused_value, rtol=1e-5, atol=1e-5)


def test_dropout_is_the_multiplier_drawn_from_the_same_seed() -> None:
    model = _layer(0.3)
    use_fused_lora(model)
    model.train()
    layer, a, b = _lora_parts(model)
    x = torch.randn(4, 24, requires_grad=True)
    torch.manual_seed(7)
    y = model(x)
    torch.manual_seed(7)
    keep = dropout_multiplier(x.shape, 0.3, torch.float32, x.device)
    assert (keep == 0).any() and (keep > 0).any()
    xr = x.detach().clone().requires_grad_()
    ar, br = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    expected = layer.base_layer(xr) + layer.scaling["default"] * ((xr * keep) @ ar.t() @ br.t())
    assert torch.allclose(y, expected, rtol=1e-5, atol=1e-5)
    y.sum().backward()
    expected.sum().backward()
    for got, want in ((x.grad, xr.grad), (a.grad, ar.grad), (b.grad, br.grad)):
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)


def test_eval_mode_and_a_disabled_adapter_run_peft_forward() -> None:
    x = torch.randn(2, 24)
    plain, fused = _layer(0.3, seed=1), _layer(0.3, seed=1)
    use_fused_lora(fused)
    plain.eval(), fused.eval()
    assert torch.equal(plain(x), fused(x))
    with plain.disable_adapter(), fused.disable_adapter():
        assert torch.equal(plain(x), fused(x))


def test_bf16_autocast_gradients_are_as_close_to_fp32_as_peft_bf16_on_the_real_model() -> None:
    base = load_model("smollm2-135m-instruct").model
    config = TrainingConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0)
    ids = torch.randint(0, 1000, (2, 24), generator=torch.Generator().manual_seed(0))

    def grads(fused: bool, amp: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        with attached_lora(base, config) as model:  # attached_lora fuses; undo for PEFT's
            if not fused:
                for m in model.modules():
                    if hasattr(m, "_peft_forward"):
                        m.forward = m._peft_forward
            model.train()
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.data.normal_(0, 0.02)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                logits = model(input_ids=ids).logits.float()
            logits.square().mean().backward()
            return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    def error(g: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> float:
        num = sum(float((g[k] - ref[k]).norm() ** 2) for k in ref)
        return (num / sum(float(ref[k].norm() ** 2) for k in ref)) ** 0.5

    ref = grads(fused=False, amp=False)
    assert error(grads(fused=True, amp=False), ref) < 1e-4
    peft_bf16, fused_bf16 = error(grads(False, True), ref), error(grads(True, True), ref)
    assert 0 < fused_bf16 < max(1.5 * peft_bf16, 0.01)


@pytest.mark.parametrize("bias", [True, False])
def test_a_frozen_input_gets_no_gradient_and_the_weights_still_do(bias: bool) -> None:
    model = _layer(0.0, bias=bias)
    use_fused_lora(model)
    model.train()
    model(torch.randn(3, 24)).sum().backward()
    layer, a, b = _lora_parts(model)
    assert a.grad is not None and b.grad is not None
    assert layer.base_layer.weight.grad is None


def test_a_frozen_weight_changed_in_place_or_swapped_is_cast_again_under_autocast() -> None:
    x = torch.randn(3, 24)
    fused, plain = _layer(0.0, seed=2), _layer(0.0, seed=2)
    use_fused_lora(fused)
    fused.train(), plain.train()
    layers = [next(m for m in model.modules() if hasattr(m, "lora_A")) for model in (fused, plain)]

    def both() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fused(x).float(), plain(x).float()

    first, _ = both()
    with torch.no_grad():
        for layer in layers:
            layer.base_layer.weight.add_(1.0)  # in place: a new version of the same tensor
    edited, expected = both()
    assert not torch.allclose(edited, first, atol=0.5)
    assert torch.allclose(edited, expected, atol=0.1, rtol=0.02)
    for layer in layers:  # swapped for another tensor, as merged_adapter does
        layer.base_layer.weight = nn.Parameter(torch.zeros(16, 24), requires_grad=False)
    swapped, expected = both()
    assert torch.allclose(swapped, expected, atol=0.1, rtol=0.02)
    assert not torch.allclose(swapped, edited, atol=0.5)
