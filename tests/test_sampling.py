"""Seeded nucleus sampling (`buckle.generation.sampling.next_tokens`) against its definition.

The engine's sampler finds the nucleus from a `topk` and draws one uniform per row instead of
sorting the vocabulary and calling `multinomial`; these tests pin that it is still exactly
temperature + top-p sampling, through all three of its paths (nucleus inside the examined
candidates, wider than them, the whole vocabulary), and that a row depends only on its seed.
"""

from __future__ import annotations

import pytest
import torch

from buckle.generation.sampling import next_tokens, top_p_filter

LOGITS = torch.tensor([2.0, 1.5, 1.2, 0.3, 0.0, -0.5, -1.0, -3.0])
DRAWS = 6000


def _expected(temperature: float, top_p: float) -> torch.Tensor:
    """The nucleus distribution by the reference definition (full sort + renormalise)."""
    scaled = (LOGITS / temperature).unsqueeze(0)
    return torch.softmax(top_p_filter(scaled, torch.tensor([top_p])), dim=-1)[0]


def _draw(temperature: float, top_p: float, candidates: int, first_seed: int = 0) -> torch.Tensor:
    rows = DRAWS
    gens = [torch.Generator().manual_seed(first_seed + i) for i in range(rows)]
    return next_tokens(LOGITS.expand(rows, -1).clone(), torch.full((rows,), temperature),
                       torch.full((rows,), top_p), gens, candidates=candidates)


@pytest.mark.parametrize(("temperature", "top_p", "candidates"), [
    (1.0, 0.7, 8),    # nucleus found inside the examined candidates
    (0.5, 0.9, 8),
    (2.0, 0.95, 2),   # nucleus wider than 2 candidates: the row is sorted in full
    (1.0, 1.0, 2),    # top_p = 1: the whole vocabulary, sampled without a sort
])
def test_samples_follow_the_nucleus_distribution(temperature, top_p, candidates):
    expected = _expected(temperature, top_p)
    tokens = _draw(temperature, top_p, candidates)
    observed = torch.bincount(tokens, minlength=LOGITS.numel()).float() / DRAWS
    assert set(tokens.tolist()) <= set(expected.nonzero().flatten().tolist())  # nothing outside
    # binomial sd <= 0.0065 at 6000 draws: 0.025 is ~4 sd, and a wrong nucleus (one token more
    # or less) or a wrong temperature moves some probability by > 0.05
    assert (observed - expected).abs().max() < 0.025, (observed, expected)


def test_nucleus_excludes_the_tail():
    # top_p = 0.7 at T=1 keeps tokens 0..2 (mass before token 2 is < 0.7, before token 3 not)
    assert _expected(1.0, 0.7).nonzero().flatten().tolist() == [0, 1, 2]
    assert set(_draw(1.0, 0.7, 8).tolist()) == {0, 1, 2}


def test_a_row_depends_only_on_its_seed_and_logits():
    vocab = 50
    logits = torch.randn(6, vocab, generator=torch.Generator().manual_seed(1)) * 2
    temperature = torch.tensor([0.0, 0.7, 1.0, 1.3, 0.9, 1.0])
    top_p = torch.tensor([1.0, 0.8, 1.0, 0.5, 0.95, 0.3])

    def gens() -> list[torch.Generator]:
        return [torch.Generator().manual_seed(100 + i) for i in range(6)]

    together = next_tokens(logits, temperature, top_p, gens(), candidates=4)
    alone = [int(next_tokens(logits[i:i + 1], temperature[i:i + 1], top_p[i:i + 1],
                             [gens()[i]], candidates=4)[0]) for i in range(6)]
    assert together.tolist() == alone
    assert together[0] == logits[0].argmax()  # temperature 0 is greedy
    again = next_tokens(logits, temperature, top_p, gens(), candidates=4)
    assert torch.equal(together, again)
