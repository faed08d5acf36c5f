"""Booster's harmful-perturbation term, added to a step's gradient (`BoosterConfig`), and its
sign-turned twin on benign pairs (`PlasticityConfig`).

Why: an adapter immunized by plain SFT on safety data (`pre`) is overwritten by the customer's
first few dozen steps on harmful data (docs/results.md: 31% of the attack's rise removed,
whatever the dose). Booster (Huang et al., 2024) minimises, next to the alignment loss f,
lambda x (h(w) - h(w~)) with w~ = w - alpha x grad h(w) / |grad h(w)|: how much one normalised
step of harmful fine-tuning would lower the harmful loss h. Its gradient, to first order as in
the paper, is lambda x (grad h(w) - grad h(w~)).

The plasticity term is the same arithmetic with -mu in place of lambda over benign pairs: it
rewards a normalised benign step that still lowers the benign loss, so the customer's task
stays learnable on the immunized adapter.

The harmful (and benign) batch of step s is a pure function of (seed, s)
(`trainer.SIDE_SETS`), so a resumed run repeats the uninterrupted one's arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from buckle.training.data import MicroBatch

Accumulate = Callable[[list[MicroBatch]], float]  # adds grad of the mean token loss; returns it


def add_perturbation_gradient(params: list[torch.Tensor], harmful_passes: list[MicroBatch],
                              accumulate: Accumulate, weight: float,
                              step: float) -> tuple[float, float]:
    """On top of the gradients already in `params` (the alignment loss's), add
    weight x (grad h(w) - grad h(w~)), w~ = w - step x grad h / |grad h|, h the mean token loss
    over `harmful_passes` (Booster: weight lambda; plasticity: -mu over benign passes).
    Returns (h(w), h(w~)); the weights are left as found."""
    aligned = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
               for p in params]
    _zero(params)
    h = accumulate(harmful_passes)
    at_w = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
            for p in params]
    norm = torch.sqrt(sum((g.float() ** 2).sum() for g in at_w)).item()
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        if norm > 0:
            for p, g in zip(params, at_w, strict=True):
                p.sub_(g, alpha=step / norm)
    _zero(params)
    h_perturbed = accumulate(harmful_passes)
    with torch.no_grad():
        for p, kept in zip(params, saved, strict=True):
            p.copy_(kept)
        for p, a, g in zip(params, aligned, at_w, strict=True):
            tilde = p.grad if p.grad is not None else torch.zeros_like(p)
            p.grad = a + weight * (g - tilde)
    return h, h_perturbed


def _zero(params: list[torch.Tensor]) -> None:
    for p in params:
        p.grad = None
