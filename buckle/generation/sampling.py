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
    """Mask tokens outside each row's nucleus (smallest set with mass >= top_p); keep the top-1.

    The reference definition (a full sort per row); `next_tokens` finds the same nucleus
    without sorting the vocabulary."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs
    drop_sorted = mass_before >= top_p.unsqueeze(-1)
    drop_sorted[:, 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


# Bumped whenever the same seed and logits would draw a different token (2: topk nucleus +
# inverse CDF replaced sort + multinomial). Curated corpora are cached under keys that include
# it, so a corpus is never resumed or served across a change of draws.
SAMPLER_VERSION = 2

# How many top tokens `next_tokens` examines before it falls back to sorting a row. Nuclei of
# trained chat models are mostly a few dozen tokens; a flat row (high temperature) may need more.
NUCLEUS_CANDIDATES = 256


def next_tokens(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
    generators: list[torch.Generator | None],
    *,
    candidates: int = NUCLEUS_CANDIDATES,
) -> torch.Tensor:
    """Pick one token per row: argmax where temperature == 0, else seeded nucleus sampling.

    Why not `top_p_filter` + `torch.multinomial`: on a 49k vocabulary that pair sorts every row
    and draws one exponential per vocabulary entry per row (multinomial's algorithm), 235 ms a
    step for the paper grid's 50 rows on 2 CPU cores, more than the model's forward pass. Here
    the nucleus comes from the row's top `candidates` tokens (a `topk`, not a sort; the mass
    they hold against the row's logsumexp tells whether the nucleus fits in them; a row where
    it does not is sorted in full), and one uniform per row picks a token by inverse CDF over
    the renormalised nucleus. Same distribution; one random number per row per step, drawn from
    the row's own generator, so a sample still depends only on its seed and logits.
    """
    # argmax in the logits' own dtype: widening bf16 to fp32 is exact, so the pick is the same,
    # without writing a [rows, vocab] fp32 copy each step (155 MB at 256 rows of Qwen's vocab)
    chosen = logits.argmax(dim=-1)
    sample_rows = (temperature > 0).nonzero(as_tuple=True)[0]
    if sample_rows.numel() == 0:
        return chosen
    rows = sample_rows.tolist()
    scaled = logits[sample_rows].float() / temperature[sample_rows].unsqueeze(-1)
    p = top_p[sample_rows]
    log_z = torch.logsumexp(scaled, dim=-1, keepdim=True)
    uniform = torch.cat([torch.rand(1, generator=generators[r], device=logits.device)
                         for r in rows])
    k = min(candidates, scaled.shape[-1])
    values, index = scaled.topk(k, dim=-1)  # sorted, descending
    probs = (values - log_z).exp()
    fits = (probs.sum(dim=-1) >= p) | (k == scaled.shape[-1])
    picked = _inverse_cdf(probs, index, p, uniform)
    whole = p >= 1.0  # the nucleus is the whole vocabulary: any order will do, no sort
    if whole.any():
        full = (scaled[whole] - log_z[whole]).exp()
        vocab = torch.arange(full.shape[-1], device=full.device).expand_as(full)
        picked[whole] = _inverse_cdf(full, vocab, None, uniform[whole])
    for j in (~(fits | whole)).nonzero(as_tuple=True)[0].tolist():  # nucleus > candidates
        values_j, index_j = scaled[j].sort(descending=True)
        probs_j = (values_j - log_z[j]).exp().unsqueeze(0)
        picked[j] = _inverse_cdf(probs_j, index_j.unsqueeze(0), p[j:j + 1], uniform[j:j + 1])[0]
    chosen[sample_rows] = picked
    return chosen


def _inverse_cdf(probs: torch.Tensor, index: torch.Tensor, top_p: torch.Tensor | None,
                 uniform: torch.Tensor) -> torch.Tensor:
    """Sample from each row's nucleus. `probs` are sorted descending over `index`; a token is in
    the nucleus if the mass before it is < top_p (the top-1 always is). top_p None keeps every
    token, in any order."""
    if top_p is not None:
        keep = (probs.cumsum(dim=-1) - probs) < top_p.unsqueeze(-1)
        keep[:, 0] = True
        probs = probs * keep
    cdf = probs.cumsum(dim=-1)
    target = (uniform * cdf[:, -1]).unsqueeze(-1)
    pos = torch.searchsorted(cdf, target, right=True).clamp_(max=probs.shape[-1] - 1)
    return index.gather(-1, pos).squeeze(-1)
