"""Safety evaluation: judges, metrics with confidence intervals, and the safety report.

The evaluation runner (generation of responses) lives in `buckle.evaluation.runner`; this package
gives it everything else: judges looked up by name, metric functions, and `SafetyReport`.
Importing it is cheap (numpy, pydantic); scikit-learn, httpx, matplotlib and torch are imported
only by the functions that need them.
"""

from buckle.evaluation.judges import (
    GCG_REFUSAL_STRINGS,
    JUDGE_REGISTRY,
    HarmClassifierJudge,
    Judge,
    RefusalKeywordJudge,
    TfidfLogRegModel,
    Verdict,
    available_judges,
    get_judge,
    is_refusal,
    merge_verdicts,
    register_judge,
)
from buckle.evaluation.judges.refusal import MODERN_REFUSAL_STRINGS
from buckle.evaluation.judges.rubric import (
    RUBRIC_TEMPLATE,
    ChatClient,
    JudgeUnavailableError,
    LocalChatClient,
    OpenAICompatibleClient,
    RubricJudge,
    parse_score,
)
from buckle.evaluation.metrics import (
    Metric,
    asr,
    harmful_rate,
    mean_ci,
    mean_rubric_score,
    over_refusal_rate,
    proportion_ci,
    unscored_count,
)
from buckle.evaluation.report import (
    JudgedResponse,
    MetricSummary,
    PromptResult,
    SafetyReport,
    compare_chart,
    render_table,
)

__all__ = [
    "GCG_REFUSAL_STRINGS",
    "JUDGE_REGISTRY",
    "MODERN_REFUSAL_STRINGS",
    "RUBRIC_TEMPLATE",
    "ChatClient",
    "HarmClassifierJudge",
    "Judge",
    "JudgeUnavailableError",
    "JudgedResponse",
    "LocalChatClient",
    "Metric",
    "MetricSummary",
    "OpenAICompatibleClient",
    "PromptResult",
    "RefusalKeywordJudge",
    "RubricJudge",
    "SafetyReport",
    "TfidfLogRegModel",
    "Verdict",
    "asr",
    "available_judges",
    "compare_chart",
    "get_judge",
    "harmful_rate",
    "is_refusal",
    "mean_ci",
    "mean_rubric_score",
    "merge_verdicts",
    "over_refusal_rate",
    "parse_score",
    "proportion_ci",
    "register_judge",
    "render_table",
    "unscored_count",
]
