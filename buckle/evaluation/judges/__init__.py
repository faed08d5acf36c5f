"""Judges: turn (prompt, response) pairs into verdicts. Look them up with `get_judge(name)`."""

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
from buckle.evaluation.judges.rubric import RubricJudge

__all__ = [
    "DECLINE_STRINGS",
    "GCG_REFUSAL_STRINGS",
    "JUDGE_REGISTRY",
    "DeclineJudge",
    "HarmClassifierJudge",
    "Judge",
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
