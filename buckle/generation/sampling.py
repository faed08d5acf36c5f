"""Per-row sampling: each row of one batch has its own temperature, top-p and seed.

Curation samples a grid of (temperature, top-p) for the same prompt in one batch, so these are
vectors, not scalars. Each row draws from its own `torch.Generator`, which makes a row's sample
depend only on its seed and logits — not on which other rows share the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    """How to decode one request. temperature == 0 means greedy."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def top_p_filter(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Mask tokens outside each row's nucleus (smallest set with mass >= top_p); keep the top-1."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs
    drop_sorted = mass_before >= top_p.unsqueeze(-1)
    drop_sorted[:, 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def next_tokens(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
    generators: list[torch.Generator | None],
) -> torch.Tensor:
    """Pick one token per row: argmax where temperature == 0, else seeded nucleus sampling."""
    logits = logits.float()
    chosen = logits.argmax(dim=-1)
    sample_rows = (temperature > 0).nonzero(as_tuple=True)[0]
    if sample_rows.numel() == 0:
        return chosen
    sub = logits[sample_rows] / temperature[sample_rows].unsqueeze(-1)
    sub = top_p_filter(sub, top_p[sample_rows])
    probs = torch.softmax(sub, dim=-1)
    for j, row in enumerate(sample_rows.tolist()):
        chosen[row] = torch.multinomial(probs[j], 1, generator=generators[row]).squeeze(0)
    return chosen
