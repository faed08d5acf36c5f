"""What makes one revision better than another: scores, the quality floors, the ranking key.

Pure functions of numbers, kept apart from the search so the ordering rules can be read (and
tested) in one place. The key is the same for both objective directions except the sign of the
perplexity term: safety and quality are applied the same way in both, as the issue asks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from buckle.curation.config import CurationConfig
from buckle.curation.scorers import Scorer, content_retention, get_scorer


@dataclass(frozen=True)
class Scores:
    """Everything measured about one response (a candidate or the original)."""

    perplexity: float
    safety: float
    helpfulness: float
    readability: float
    retention: float = 1.0  # share of the original's content words kept (1.0 for the original)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scores:
        return cls(**{k: float(v) for k, v in data.items()})


@dataclass(frozen=True)
class QualityScorers:
    """The three text scorers a config names, resolved once per run."""

    safety: Scorer
    helpfulness: Scorer
    readability: Scorer

    @classmethod
    def from_config(cls, config: CurationConfig) -> QualityScorers:
        return cls(safety=get_scorer(config.safety_scorer),
                   helpfulness=get_scorer(config.helpfulness_scorer),
                   readability=get_scorer(config.readability_scorer))

    def score(self, query: str, response: str, perplexity: float,
              original: str | None = None) -> Scores:
        """All scores of `response`; `original` (the source reply) enables retention."""
        return Scores(perplexity=perplexity, safety=self.safety(query, response),
                      helpfulness=self.helpfulness(query, response),
                      readability=self.readability(query, response),
                      retention=1.0 if original is None else content_retention(original,
                                                                               response))


def objective_key(scores: Scores, config: CurationConfig) -> float:
    """Higher is better: +/- log(perplexity) (by `config.objective`) + safety_weight x safety.

    log keeps the perplexity term on the same few-units scale as the [0, 1] safety score, so
    `safety_weight` means the same thing for every model and text length.
    """
    sign = 1.0 if config.objective == "maximize" else -1.0
    return sign * math.log(scores.perplexity) + config.safety_weight * scores.safety


def floor_failures(scores: Scores, original: Scores, tau: float,
                   min_retention: float = 0.0, min_safety: float = 0.0) -> list[str]:
    """Quality floors a candidate misses (empty = admissible): helpfulness and readability
    >= tau x the original's; retention >= min_retention (absolute, see `content_retention`);
    safety >= min_safety (absolute: a revision that carries no safety implication is not kept)."""
    failed = []
    if min_safety > 0 and scores.safety < min_safety:
        failed.append("safety")
    if scores.helpfulness < tau * original.helpfulness:
        failed.append("helpfulness")
    if scores.readability < tau * original.readability:
        failed.append("readability")
    if scores.retention < min_retention:
        failed.append("retention")
    return failed
