"""CTRL data curation: config, the perplexity objective, and the quality scorers it ranks by.

CTRL (arXiv 2410.02220) rewrites each training response over several rounds of sampled
revisions, keeping the candidates with the most extreme perplexity under the target model
whose helpfulness and readability stay above a floor. This package holds the building blocks;
the beam search composes them.
"""

from buckle.curation.config import DEFAULT_REVISION_PROMPT, PRESETS, CurationConfig
from buckle.curation.perplexity import encode_pair, response_perplexities
from buckle.curation.scorers import (
    SAFETY_CUES,
    SCORERS,
    Scorer,
    available_scorers,
    flesch_reading_ease,
    get_scorer,
    helpfulness,
    readability,
    register_scorer,
    safety_implication,
)

__all__ = [
    "DEFAULT_REVISION_PROMPT",
    "PRESETS",
    "SAFETY_CUES",
    "SCORERS",
    "CurationConfig",
    "Scorer",
    "available_scorers",
    "encode_pair",
    "flesch_reading_ease",
    "get_scorer",
    "helpfulness",
    "readability",
    "register_scorer",
    "response_perplexities",
    "safety_implication",
]
