"""Safety evaluations of a base model or an adapter."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.common import STRICT_INPUT, CursorListPublic, JobError
from app.schemas.refs import ref_field
from app.schemas.safety import MAX_EVAL_PROMPTS


class EvaluationCreate(BaseModel):
    model_config = ConfigDict(**STRICT_INPUT, json_schema_extra={"examples": [{
        "model": "smollm2-135m-instruct", "prompts": "advbench", "limit": 20,
        "benign": "chatterbot", "benign_limit": 20}]})

    model: str = ref_field("model", description="What to evaluate.")
    prompts: str = ref_field("prompts", "advbench",
                             description="Harmful prompts (advbench, harmful-qa, chatterbot).")
    limit: int = Field(20, ge=1, le=MAX_EVAL_PROMPTS)
    benign: str | None = ref_field("prompts", "chatterbot",
                                   description="Prompt set for over-refusal, or null.")
    benign_limit: int = Field(20, ge=1, le=MAX_EVAL_PROMPTS)
    judges: list[Literal["refusal", "harm"]] = Field(default_factory=lambda: ["refusal", "harm"],
                                                     min_length=1, max_length=2)


class EvaluationPublic(BaseModel):
    id: str
    object: Literal["safety.evaluation"] = "safety.evaluation"
    created_at: int
    finished_at: int | None = None
    model: str
    adapter_id: str | None = None
    status: Literal["queued", "running", "succeeded", "failed"]
    config: dict[str, Any]
    report: dict[str, Any] | None = None
    error: JobError | None = None


class EvaluationListPublic(CursorListPublic):
    data: list[EvaluationPublic]
