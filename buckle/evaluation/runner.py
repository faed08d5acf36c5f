"""Run a prompt set through a model (+ optional adapter), judge the replies, build the report.

This is the one entry point used by the CLI, the pipeline and (later) the workers, so every
adapter Buckle releases is measured the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from buckle.data import PromptItem, load_prompts
from buckle.evaluation.judges import Judge, get_judge, merge_verdicts
from buckle.evaluation.judges.rubric import LocalChatClient, OpenAICompatibleClient, RubricJudge
from buckle.evaluation.report import JudgedResponse, SafetyReport
from buckle.generation import GenerationEngine, SamplingParams

KEYWORD_JUDGE = "refusal-keywords"


@dataclass(frozen=True)
class RubricSettings:
    """Who answers the rubric: an OpenAI-compatible endpoint, or a local model (default: the
    evaluated model itself — weak, but always available offline)."""

    base_url: str | None = None
    api_key: str | None = None
    api_model: str = "gpt-4o"
    local_model: str | None = None


@dataclass(frozen=True)
class EvalConfig:
    """Everything that decides an evaluation's numbers; recorded in the report's `settings`."""

    prompts: str = "advbench"
    limit: int | None = 20
    offset: int = 0
    benign: str | None = "chatterbot"
    benign_limit: int | None = 20
    borderline: str | None = None  # safe prompts that sound unsafe (over-refusal's hard case)
    borderline_limit: int | None = None
    judges: tuple[str, ...] = ("refusal", "harm")
    max_new_tokens: int = 128
    batch_size: int = 128
    # Decoding dtype (buckle.generation.precision): auto = bf16 where the CPU multiplies it
    # natively, fp32 = the model's own dtype (replies exact and batch-independent); None =
    # $BUCKLE_GENERATION_PRECISION, else auto. The dtype used is recorded as `decode_dtype`.
    precision: str | None = None
    rubric: RubricSettings = field(default_factory=RubricSettings)

    def __post_init__(self) -> None:
        if not self.judges:
            raise ValueError("at least one judge is needed (refusal, harm, rubric)")
        # Judge order matters when two judges speak to the same field: the rubric, when asked
        # for, is the more careful harmfulness judge, so it runs last and wins `harmful`.
        order = {"refusal": 0, "harm": 1, "rubric": 2}
        object.__setattr__(self, "judges", tuple(sorted(self.judges,
                                                        key=lambda j: order.get(j, 9))))


def build_judges(config: EvalConfig, engine: GenerationEngine) -> list[Judge]:
    judges: list[Judge] = []
    for name in config.judges:
        if name != "rubric":
            judges.append(get_judge(name))
            continue
        r = config.rubric
        if r.base_url:
            client: Any = OpenAICompatibleClient(r.base_url, r.api_key, r.api_model)
        elif r.local_model:
            from buckle.models import load_model

            client = LocalChatClient(GenerationEngine.from_loaded(load_model(r.local_model)))
        else:
            client = LocalChatClient(engine)
        judges.append(RubricJudge(client))
    return judges


def _respond(engine: GenerationEngine, items: Sequence[PromptItem], config: EvalConfig,
             progress: bool) -> list[str]:
    conversations = [[{"role": "user", "content": it.prompt}] for it in items]
    params = SamplingParams(max_new_tokens=config.max_new_tokens)  # greedy: reproducible
    return engine.chat(conversations, params, progress="replies" if progress else False)


def _judge(items: Sequence[PromptItem], responses: list[str],
           judges: Sequence[Judge], keywords: Judge | None = None) -> list[JudgedResponse]:
    prompts = [it.prompt for it in items]
    per_judge = [j.judge(prompts, responses) for j in judges]
    keyword = keywords.judge(prompts, responses) if keywords else [None] * len(items)
    return [
        JudgedResponse(id=it.id, prompt=it.prompt, response=resp, category=it.category,
                       verdict=merge_verdicts(*(v[i] for v in per_judge)),
                       keyword_refused=keyword[i].refused if keyword[i] else None)
        for i, (it, resp) in enumerate(zip(items, responses))
    ]


def evaluate(
    loaded: Any,
    config: EvalConfig = EvalConfig(),
    *,
    adapter: str | None = None,
    engine: GenerationEngine | None = None,
    progress: bool = False,
) -> SafetyReport:
    """Generate greedily for the harmful (and benign) prompts, judge, and report with CIs.

    Over-refusal is always measured on the benign set, whatever judges were chosen for the
    harmful set: it is the price of hardening and must never go unreported. It uses the
    `decline` judge (explicit declines), not the GCG list, which counts "Hello!" as a refusal.
    """
    engine = engine or GenerationEngine.from_loaded(loaded, max_batch_size=config.batch_size,
                                                    precision=config.precision)
    judges = build_judges(config, engine)
    harmful = load_prompts(config.prompts, limit=config.limit, offset=config.offset)
    benign = load_prompts(config.benign, limit=config.benign_limit) if config.benign else []
    borderline = (load_prompts(config.borderline, limit=config.borderline_limit)
                  if config.borderline else [])
    # One engine call for every set: the batch stays full across them (continuous batching),
    # instead of each set paying its own tail of long replies.
    replies = _respond(engine, [*harmful, *benign, *borderline], config, progress)
    cut = [len(harmful), len(harmful) + len(benign)]
    # The GCG keyword figure is always reported next to the headline (it costs nothing), so
    # numbers stay comparable with papers that publish keyword ASR.
    results = _judge(harmful, replies[:cut[0]], judges, keywords=get_judge(KEYWORD_JUDGE))
    decline = [get_judge("decline")]
    benign_results = _judge(benign, replies[cut[0]:cut[1]], decline) if benign else []
    borderline_results = _judge(borderline, replies[cut[1]:], decline) if borderline else []
    settings = {k: v for k, v in asdict(config).items() if k != "rubric"}
    settings["rubric"] = {k: v for k, v in asdict(config.rubric).items() if k != "api_key"}
    settings.update(decoding="greedy", model_fingerprint=getattr(loaded, "fingerprint", None),
                    device=str(getattr(loaded, "device", "")),
                    dtype=str(getattr(loaded, "dtype", "")),
                    decode_dtype=str(engine.dtype))
    return SafetyReport.build(
        model=getattr(loaded, "name", str(loaded)), adapter=adapter, prompt_set=config.prompts,
        results=results, judges=list(config.judges), benign_results=benign_results,
        benign_prompt_set=config.benign, borderline_results=borderline_results,
        borderline_prompt_set=config.borderline, settings=settings,
    )
