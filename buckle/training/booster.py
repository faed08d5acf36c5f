"""Booster's harmful-perturbation term, added to a step's gradient (`BoosterConfig`), and its
look-ahead twin on benign pairs (`PlasticityConfig`).

Why: an adapter immunized by plain SFT on safety data (`pre`) is overwritten by the customer's
first few dozen steps on harmful data (docs/results.md: 31% of the attack's rise removed,
whatever the dose). Booster (Huang et al., 2024) minimises, next to the alignment loss f,
lambda x (h(w) - h(w~)) with w~ = w - alpha x grad h(w) / |grad h(w)|: how much one normalised
step of harmful fine-tuning would lower the harmful loss h. Its gradient, to first order as in
the paper, is lambda x (grad h(w) - grad h(w~)).

The plasticity term takes the same normalised step on benign pairs and adds mu x the benign
loss's gradient *after* it (first-order MAML, Finn et al., 2017): the adapter is pushed to where
one benign step lands at a low benign loss, so the customer's task stays learnable on the
immunized adapter. (Booster's difference with the sign turned is not usable: it rewards raising
the benign loss at w itself, and on dev the alignment loss went from 0.14 to 84.6 in 24 steps.)

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
    """Booster: on top of the gradients already in `params` (the alignment loss's), add
    weight x (grad h(w) - grad h(w~)), w~ = w - step x grad h / |grad h|, h the mean token loss
    over `harmful_passes`. Returns (h(w), h(w~)); the weights are left as found."""
    aligned, at_w, at_tilde, h, h_perturbed = _around_a_normalised_step(params, harmful_passes,
                                                                        accumulate, step)
    with torch.no_grad():
        for p, a, g, tilde in zip(params, aligned, at_w, at_tilde, strict=True):
            p.grad = a + weight * (g - tilde)
    return h, h_perturbed


def add_lookahead_gradient(params: list[torch.Tensor], benign_passes: list[MicroBatch],
                           accumulate: Accumulate, weight: float,
                           step: float) -> tuple[float, float]:
    """Plasticity: on top of the gradients already in `params`, add weight x grad b(w~),
    w~ = w - step x grad b / |grad b|, b the mean token loss over `benign_passes`: the gradient
    (first order) of the benign loss *after* one normalised benign step. Returns (b(w), b(w~));
    the weights are left as found."""
    aligned, _, at_tilde, b, b_perturbed = _around_a_normalised_step(params, benign_passes,
                                                                     accumulate, step)
    with torch.no_grad():
        for p, a, tilde in zip(params, aligned, at_tilde, strict=True):
            p.grad = a + weight * tilde
    return b, b_perturbed


def _around_a_normalised_step(params: list[torch.Tensor], passes: list[MicroBatch],
                              accumulate: Accumulate, step: float
                              ) -> tuple[list[torch.Tensor], list[torch.Tensor],
                                         list[torch.Tensor], float, float]:
    """(gradients found in `params`, grad f(w), grad f(w~), f(w), f(w~)) for the mean token
    loss f over `passes`, w~ = w - step x grad f / |grad f|; the weights are put back."""
    aligned = _grads(params)
    _zero(params)
    f = accumulate(passes)
    at_w = _grads(params)
    norm = torch.sqrt(sum((g.float() ** 2).sum() for g in at_w)).item()
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        if norm > 0:
            for p, g in zip(params, at_w, strict=True):
                p.sub_(g, alpha=step / norm)
    _zero(params)
    f_perturbed = accumulate(passes)
    at_tilde = _grads(params)
    with torch.no_grad():
        for p, kept in zip(params, saved, strict=True):
            p.copy_(kept)
    return aligned, at_w, at_tilde, f, f_perturbed


def _grads(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
            for p in params]


def _zero(params: list[torch.Tensor]) -> None:
    for p in params:
        p.grad = None
