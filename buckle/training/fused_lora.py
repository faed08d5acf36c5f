"""One autograd node per LoRA projection for training (`use_fused_lora`).

Why: on a 2-core CPU a LoRA step of a small model is bound by the many small operations around
each projection, not by its matrix products (docs/benchmarks.md: `aten::mm` 24-27% of a
SmolLM2-135M step, casts 14-16%, element-wise products 8-10%). PEFT's `lora.Linear` under
autocast runs the frozen projection, then dropout, two casts, `A`, another cast, `B`, a scale and
an add, each its own autograd node, and casts the input to the compute dtype twice. Here the
input is cast once, the dropout multiplier is drawn in the compute dtype, the scale is folded
into an `addmm`, and the backward is written out: five matrix products and one product with the
mask, with no weight gradient for the frozen projection. The arithmetic is LoRA's own
(y = W x + b + s B A (m * x)), checked against PEFT's forward and gradients in the tests.

Only plain LoRA layers in training mode use it (one active adapter, not merged, frozen base, no
DoRA or other variant); everything else runs PEFT's forward unchanged. The adapter parameters
stay PEFT's, so checkpoints and the written adapter are untouched.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from buckle.training.dropout import FastDropout, dropout_multiplier


class _LoraLinear(torch.autograd.Function):
    """y = x W^T + b + s (m * x) A^T B^T in `dtype`; gradients for x, A and B only.

    The frozen weight is cast at every pass, as autocast does: keeping a cast copy for the run
    measured no faster (SmolLM2, 128 conversations: 369 / 370 vs 381 / 365 tok/s).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                lora_a: torch.Tensor, lora_b: torch.Tensor, scale: float,
                keep: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        xc = x.to(dtype)
        w, a, b = weight.to(dtype), lora_a.to(dtype), lora_b.to(dtype)
        y = F.linear(xc, w, None if bias is None else bias.to(dtype))
        xd = xc if keep is None else xc * keep
        h = xd.reshape(-1, xd.shape[-1]) @ a.t()  # (tokens, r)
        y.view(-1, y.shape[-1]).addmm_(h, b.t(), alpha=scale)
        ctx.save_for_backward(xd, h, keep, w, a, b)
        ctx.scale, ctx.x_dtype, ctx.shape = scale, x.dtype, x.shape
        ctx.param_dtypes = (lora_a.dtype, lora_b.dtype)
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[Any, ...]:
        xd, h, keep, w, a, b = ctx.saved_tensors
        g = grad_y.to(w.dtype).reshape(-1, grad_y.shape[-1])  # (tokens, out)
        gh = (g @ b).mul_(ctx.scale)  # (tokens, r)
        grad_x = None
        if ctx.needs_input_grad[0]:
            through_lora = (gh @ a).view(ctx.shape)
            if keep is not None:
                through_lora.mul_(keep)
            grad_x = (g @ w).view(ctx.shape).add_(through_lora).to(ctx.x_dtype)
        grad_a = (gh.t() @ xd.reshape(-1, xd.shape[-1])).to(ctx.param_dtypes[0])
        grad_b = (g.t() @ h).mul_(ctx.scale).to(ctx.param_dtypes[1])
        return grad_x, None, None, grad_a, grad_b, None, None, None


def _compute_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return torch.promote_types(x.dtype, weight.dtype)


def _fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """`lora.Linear.forward` for the training case; PEFT's own forward for every other."""
    base = self.base_layer
    adapters = self.active_adapters
    plain = (self.training and not self.disable_adapters and not self.merged and not args
             and not kwargs and len(adapters) == 1 and adapters[0] in self.lora_A
             and adapters[0] not in self.lora_variant and isinstance(base, nn.Linear)
             and not base.weight.requires_grad
             and (base.bias is None or not base.bias.requires_grad))
    if not plain:
        return self._peft_forward(x, *args, **kwargs)
    name = adapters[0]
    dtype = _compute_dtype(x, base.weight)
    dropout = self.lora_dropout[name]
    p = dropout.p if isinstance(dropout, nn.Dropout | FastDropout) else 0.0
    keep = dropout_multiplier(x.shape, p, dtype, x.device) if p > 0 else None
    with torch.autocast(x.device.type, enabled=False):
        return _LoraLinear.apply(x, base.weight, base.bias, self.lora_A[name].weight,
                                 self.lora_B[name].weight, float(self.scaling[name]), keep,
                                 dtype)


def use_fused_lora(model: Any) -> int:
    """Give every PEFT `lora.Linear` of `model` the fused training forward; returns how many.

    The layers are PEFT's and are discarded by `unload()`, so nothing needs undoing.
    """
    from peft.tuners.lora.layer import Linear as LoraLinear

    fused = 0
    for module in model.modules():
        if isinstance(module, LoraLinear) and not hasattr(module, "_peft_forward"):
            module._peft_forward = module.forward
            module.forward = types.MethodType(_fused_forward, module)
            fused += 1
    return fused
