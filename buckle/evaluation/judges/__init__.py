"""Judges: turn (prompt, response) pairs into verdicts. Look them up with `get_judge(name)`.

`refusal` (MiniLM features + cues) and `harm` (harmful request × compliant reply) are what
reports and screening use; `refusal-keywords` (the published GCG list: the keyword-ASR column),
`harm-tfidf` (the earlier TF-IDF classifier), `decline`, `rubric` and the two embedding heads
alone (`refusal-embedding`, `harm-embedding`) stay available by name.
"""

from buckle.evaluation.judges.base import (
    JUDGE_REGISTRY,
    Judge,
    Verdict,
    available_judges,
    get_judge,
    merge_verdicts,
    register_judge,
)
from buckle.evaluation.judges.harm import HarmClassifierJudge, TfidfLogRegModel
from buckle.evaluation.judges.refusal import (
    DECLINE_STRINGS,
    GCG_REFUSAL_STRINGS,
    DeclineJudge,
    RefusalKeywordJudge,
    is_refusal,
)
from buckle.evaluation.judges.request_gate import GatedHarmJudge, RefusalJudge
from buckle.evaluation.judges.rubric import RubricJudge

__all__ = [
    "DECLINE_STRINGS",
    "GCG_REFUSAL_STRINGS",
    "JUDGE_REGISTRY",
    "DeclineJudge",
    "GatedHarmJudge",
    "HarmClassifierJudge",
    "Judge",
    "RefusalJudge",
    "RefusalKeywordJudge",
    "RubricJudge",
    "TfidfLogRegModel",
    "Verdict",
    "available_judges",
    "get_judge",
    "is_refusal",
    "merge_verdicts",
    "register_judge",
]
