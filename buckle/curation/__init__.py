"""CTRL data curation: config, the perplexity objective, and the quality scorers it ranks by.

CTRL (arXiv 2410.02220) rewrites each training response over several rounds of sampled
revisions, keeping the candidates with the most extreme perplexity under the target model
whose helpfulness and readability stay above a floor. `curate_source` / `curate` are the entry
points (CLI, pipeline and workers all use them); `search.BeamSearch` is the algorithm and
`corpus` the content-addressed, resumable store. See docs/ctrl.md.
"""

from buckle.curation.config import DEFAULT_REVISION_PROMPT, PRESETS, CurationConfig
from buckle.curation.corpus import (
    CuratedCorpus,
    CurationProgress,
    corpora_root,
    curate,
    curate_source,
)
from buckle.curation.objective import Scores, floor_failures, objective_key
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
from buckle.curation.search import BeamSearch, Candidate, CuratedItem

__all__ = [
    "DEFAULT_REVISION_PROMPT",
    "PRESETS",
    "SAFETY_CUES",
    "SCORERS",
    "BeamSearch",
    "Candidate",
    "CuratedCorpus",
    "CuratedItem",
    "CurationConfig",
    "CurationProgress",
    "Scorer",
    "Scores",
    "available_scorers",
    "corpora_root",
    "curate",
    "curate_source",
    "encode_pair",
    "flesch_reading_ease",
    "floor_failures",
    "get_scorer",
    "helpfulness",
    "objective_key",
    "readability",
    "register_scorer",
    "response_perplexities",
    "safety_implication",
]
