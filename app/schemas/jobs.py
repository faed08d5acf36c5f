"""Fine-tuning jobs: the create body (OpenAI's fields + Buckle's `safety`), the job, its events
and checkpoints."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.core.config import BASE_LEARNING_RATE
from app.schemas.common import STRICT_INPUT, JobError, ListPublic
from app.schemas.refs import ref_field
from app.schemas.safety import SafetyIn

SAFETY_EXAMPLE = {
    "policy": "during",
    "curated_ratio": 0.25,
    "curation": {"source": "chatterbot", "limit": 64, "preset": "quick"},
    "max_asr": None,
}


Auto = Literal["auto"]


class HyperparametersIn(BaseModel):
    """`auto` (or absent) means Buckle's default: 3 epochs, batch 8, multiplier 1.0."""

    model_config = STRICT_INPUT

    n_epochs: int | Auto = Field("auto", description="Passes over the training file (1-50).")
    batch_size: int | Auto = Field("auto", description="Examples per optimizer step (1-256).")
    learning_rate_multiplier: float | Auto = Field(
        "auto", description=f"LoRA learning rate = multiplier × {BASE_LEARNING_RATE:g} "
                            "(0 < multiplier ≤ 100).")

    @field_validator("n_epochs")
    @classmethod
    def _epochs(cls, v: int | str) -> int | str:
        if v != "auto" and not 1 <= v <= 50:
            raise ValueError("n_epochs must be between 1 and 50")
        return v

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, v: int | str) -> int | str:
        if v != "auto" and not 1 <= v <= 256:
            raise ValueError("batch_size must be between 1 and 256")
        return v

    @field_validator("learning_rate_multiplier")
    @classmethod
    def _lr(cls, v: float | str) -> float | str:
        if v != "auto" and not 0 < v <= 100:
            raise ValueError("learning_rate_multiplier must be > 0 and ≤ 100")
        return v

    def resolved(self) -> dict[str, Any]:
        return {
            "n_epochs": 3 if self.n_epochs == "auto" else self.n_epochs,
            "batch_size": 8 if self.batch_size == "auto" else self.batch_size,
            "learning_rate_multiplier": (1.0 if self.learning_rate_multiplier == "auto"
                                         else float(self.learning_rate_multiplier)),
        }


class SupervisedMethod(BaseModel):
    model_config = STRICT_INPUT

    hyperparameters: HyperparametersIn = Field(default_factory=HyperparametersIn)


class MethodIn(BaseModel):
    """OpenAI's newer way to pass hyperparameters; only `supervised` exists in Buckle."""

    model_config = STRICT_INPUT

    type: Literal["supervised"] = "supervised"
    supervised: SupervisedMethod | None = None


class JobCreate(BaseModel):
    model_config = ConfigDict(**STRICT_INPUT, json_schema_extra={"examples": [{
        "model": "smollm2-135m-instruct", "training_file": "file-0193a1b2c3d4e5f6a7b8",
        "hyperparameters": {"n_epochs": 2, "batch_size": 8, "learning_rate_multiplier": 1.0},
        "suffix": "support-bot", "seed": 7, "metadata": {"team": "support"},
        "safety": SAFETY_EXAMPLE}]})

    model: str = ref_field("base-model", description="The model to fine-tune.")
    training_file: str = ref_field("training-file", description="Chat JSONL to train on.")
    validation_file: str | None = ref_field("training-file", None,
                                            description="Held-out chat JSONL.")
    hyperparameters: HyperparametersIn | None = None
    method: MethodIn | None = None
    suffix: str | None = Field(None, min_length=1, max_length=64,
                               pattern=r"^[A-Za-z0-9_.\-]+$")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    metadata: dict[str, str] | None = None
    # accepted for SDK compatibility; unused
    integrations: list[dict[str, Any]] | None = Field(None, max_length=16)
    safety: SafetyIn = Field(
        default_factory=SafetyIn,
        description="Buckle extension (SDK: `extra_body={'safety': {...}}`). `policy`: none "
                    "(plain fine-tune), pre (immunize on curated data first), during (mix "
                    "curated data into the customer's, default), post (restore afterwards), "
                    "auto (`during`, then `post` rounds until ASR ≤ base + `max_asr`). "
                    "`curated_ratio` (0.25): curated share of the `during` mix. `curation`: "
                    "which corpus (source chatterbot, limit 64, preset quick); corpora are "
                    "built once per (model, source, config) and reused. Data fields take "
                    "built-in names or your own file ids, never paths; every number has an "
                    "upper bound (docs/service.md).",
        examples=[SAFETY_EXAMPLE])

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is not None and (len(v) > 16 or any(len(k) > 64 or len(x) > 512
                                                 for k, x in v.items())):
            raise ValueError("metadata: at most 16 keys, keys ≤ 64 and values ≤ 512 characters")
        return v

    def hyperparameters_in(self) -> HyperparametersIn:
        if self.method is not None and self.method.supervised is not None:
            return self.method.supervised.hyperparameters
        return self.hyperparameters or HyperparametersIn()


class HyperparametersPublic(BaseModel):
    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float


class JobPublic(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    hyperparameters: HyperparametersPublic
    method: dict[str, Any]
    model: str
    organization_id: str
    result_files: list[str] = Field(default_factory=list)
    seed: int
    status: Literal["validating_files", "queued", "running", "paused", "succeeded", "failed",
                    "cancelled"]
    trained_tokens: int | None = None
    training_file: str
    validation_file: str | None = None
    integrations: list[dict[str, Any]] | None = None
    estimated_finish: int | None = None
    metadata: dict[str, str] | None = None
    user_provided_suffix: str | None = None
    # Buckle extensions
    safety: dict[str, Any]
    safety_scores: dict[str, Any] | None = Field(
        None, description="Measured safety of the base model and the released adapter.")
    progress: float = Field(0.0, description="Percent complete (0-100).")
    screening: dict[str, Any] | None = Field(
        None, description="The training file's harm-judge screening, recorded at validation.")


class JobListPublic(ListPublic):
    data: list[JobPublic]


class EventPublic(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: str
    message: str
    type: str = "message"
    data: dict[str, Any] | None = None


class EventListPublic(ListPublic):
    data: list[EventPublic]


class CheckpointPublic(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: dict[str, Any]
    step_number: int


class CheckpointListPublic(ListPublic):
    data: list[CheckpointPublic]
    first_id: str | None = None
    last_id: str | None = None




class SafetyComparisonPublic(BaseModel):
    """A job's safety beside the base model and the organization's own unprotected run."""

    object: Literal["fine_tuning.job.safety_comparison"] = "fine_tuning.job.safety_comparison"
    job: str
    model: str
    policy: str
    unprotected_job: str | None = Field(
        description="The organization's latest succeeded `policy: none` job on the same model "
                    "and training file, if any.")
    title: str
    series: dict[str, dict[str, Any]] = Field(
        description="base, unprotected (when known), hardened (or adapter for a `none` job): "
                    "{n, asr, keyword_asr, harmful_rate, over_refusal_rate, …} with 95% CIs.")
    utility: dict[str, dict[str, Any]] = Field(
        description="The same series' exact match and loss on the job's validation file.")
