"""The contract of one customization job: what it asks for (`JobSpec`), what it reports while it
runs (`ProgressEvent`), and what it produces (`JobResult`).

Why a separate module: the CLI (`buckle run JOBSPEC.yaml`), the Celery workers and the tests all
build a `JobSpec` and read a `JobResult`; none of them should import the training or curation
machinery to do so. Everything here is plain pydantic, JSON-serialisable, with no torch import.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from buckle.errors import Cancelled

PolicyName = Literal["none", "pre", "during", "post", "auto", "refusal-mix", "uncurated"]
Stage = Literal["validate", "curate", "train", "checkpoint", "evaluate", "save", "done"]


class Hyperparameters(BaseModel):
    """The customer's knobs (names follow the OpenAI fine-tuning API where one exists)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_epochs: int = Field(3, ge=1, le=50)
    batch_size: int = Field(8, ge=1, le=256)
    learning_rate: float = Field(2e-4, gt=0, le=1e-1)
    lora_r: int = Field(16, ge=1, le=512)
    lora_alpha: int = Field(32, ge=1)
    max_seq_len: int = Field(1024, ge=16)


class CurationSpec(BaseModel):
    """Which curated corpus a job uses: built once per (model, source, config), then reused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = "chatterbot"  # a built-in conversation source or a JSONL path
    limit: int = Field(64, ge=1)
    # chatterbot's first items are also its benign evaluation prompts; start past them (the
    # pipeline additionally drops any item whose prompt is in an evaluation set).
    offset: int = Field(200, ge=0)
    preset: Literal["quick", "paper", "v2"] = "quick"
    overrides: dict[str, Any] = Field(default_factory=dict)  # any CurationConfig field


CorpusPart = Literal["ctrl", "responsible", "anchors"]
# The product default: the own-voice parts. They removed 150-156% of the attack's ASR rise on
# the test split (docs/results.md); the `ctrl` part alone removed none on dev, so it is an
# ablation a job names, not a default.
DEFAULT_PARTS: tuple[CorpusPart, ...] = ("responsible", "anchors")
# `curation.source` "anchors": CTRL revises the base model's own answers to the `everyday`
# instructions (built like the anchors part, cached), not a fixed answer set
ANCHORS_SOURCE = "anchors"


def distinct_parts(value: Sequence[str]) -> Sequence[str]:
    """`parts` validator shared with the API schema: each part at most once."""
    if len(set(value)) != len(value):
        raise ValueError(f"parts lists a part twice: {list(value)}")
    return value


# Defaults of the own-voice parts (the API schema uses the same): harmful-qa past the attack
# data of the experiments (0-31); ordinary prompts past every benign evaluation window.
DEFAULT_RESPONSIBLE = {"source": "harmful-qa", "offset": 64, "limit": 200}
DEFAULT_ANCHORS = {"source": "anchor-prompts", "offset": 0, "limit": 200}


class OwnVoiceSource(BaseModel):
    """Prompts the base model answers in its own voice for an own-voice corpus part."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    offset: int = Field(0, ge=0)
    limit: int = Field(200, ge=1)
    max_new_tokens: int = Field(160, ge=16, le=1024)


DOCUMENTED_PLASTICITY = 1.0  # `ImmunizeSpec.plasticity` when a booster job leaves it unset


class ImmunizeSpec(BaseModel):
    """`pre`'s immunize objective. "sft": train on the safety corpus. "booster": add Booster's
    harmful-perturbation term (`buckle.training.booster`) over harmful (prompt, answer) pairs
    of `harmful_source` (answers cut to their first `reply_words` words, as the experiments'
    attack data), so the customer's later steps on harmful data undo less of it.
    `layout`: "shared" = the customer's stage continues the immunize adapter; "merged" =
    Booster's own layout: the immunize adapter is merged into the frozen base and the customer
    trains a fresh LoRA on top; the release stacks both (rank 2r, one PEFT adapter)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The documented `pre` objective (dev v2, 2026-12-04, docs/results.md): Booster with the
    # plasticity term removed 100% of the attack's rise at 95% exact match; plain SFT removed 19%.
    method: Literal["sft", "booster"] = "booster"
    layout: Literal["shared", "merged"] = "shared"
    # harmful-qa past the experiments' attack rows (0-31); the same prompts as `responsible`
    harmful_source: str = "harmful-qa"
    harmful_offset: int = Field(64, ge=0)
    harmful_limit: int = Field(200, ge=1)
    reply_words: int = Field(48, ge=1, le=2000)
    weight: float = Field(5.0, gt=0, le=100)  # Booster's lambda
    step: float = Field(0.1, gt=0, le=10)  # Booster's alpha (the plasticity term's too)
    # Booster's benign twin (`buckle.training.PlasticityConfig`): mu x the loss of benign
    # (prompt, answer) pairs of `benign_source` after one normalised step on them (human
    # answers, not the model's voice: a task it still has to learn), so the customer's own task
    # stays learnable; 0 = off; method "booster" only.
    # chatterbot 200-399: past the benign evaluation windows (0-199, 400-459) and the anchors
    # None: the documented weight, 1 with method "booster" (off with "sft"); 0 turns it off
    plasticity: float | None = Field(None, ge=0, le=100)
    benign_source: str = "chatterbot"
    benign_offset: int = Field(200, ge=0)
    benign_limit: int = Field(200, ge=1)

    @model_validator(mode="after")
    def _plasticity_rides_with_booster(self) -> ImmunizeSpec:
        if self.plasticity and self.method != "booster":
            raise ValueError('immunize.plasticity is a term of method "booster" (it keeps benign '
                             f'steps effective next to Booster\'s); the job has method '
                             f'{self.method!r}: set method "booster" or plasticity 0')
        return self

    @property
    def plasticity_weight(self) -> float:
        """The plasticity term's weight in effect (`plasticity`, else the documented 1)."""
        if self.plasticity is not None:
            return self.plasticity
        return DOCUMENTED_PLASTICITY if self.method == "booster" else 0.0


class SafetySpec(BaseModel):
    """Buckle's extension of a fine-tuning job: where and how curated data is applied."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: PolicyName = "during"
    curated_ratio: float = Field(0.25, gt=0, lt=1)  # share of curated items in the `during` mix
    # The safety corpus v2 is the union of these named parts (`buckle.pipeline.safety_data`):
    # "ctrl" = CTRL revisions of `curation.source`; "responsible" = the base model's own
    # declines of `responsible.source` (written declines where it has too few, see
    # `safety_data.MIN_OWN_DECLINES`); "anchors" = its own answers to `anchors.source`.
    parts: tuple[CorpusPart, ...] = Field(DEFAULT_PARTS, min_length=1)
    responsible: OwnVoiceSource = Field(
        default_factory=lambda: OwnVoiceSource(**DEFAULT_RESPONSIBLE))
    anchors: OwnVoiceSource = Field(default_factory=lambda: OwnVoiceSource(**DEFAULT_ANCHORS))
    # Dose of a stage made of safety data only (`pre`'s immunize, `post`/`auto`'s restore):
    # None = the customer's n_epochs / learning_rate.
    safety_epochs: int | None = Field(None, ge=1, le=50)
    safety_learning_rate: float | None = Field(None, gt=0, le=1e-1)
    # share of the corpus a restore stage (`post`, `auto`'s rounds) trains on, drawn per part
    # at its share; None = the policy's documented dose
    restore_share: float | None = Field(None, gt=0, le=1)
    # weight of an unlikelihood term in the stages of safety data only (`post`/`auto`'s restore,
    # `pre`'s immunize): the `anchors` prompts paired with the model's own decline (from
    # `responsible`) are made unlikely, against the decline leaking onto ordinary prompts;
    # None = the policy's documented dose (`post`/`auto`: 1), 0 = off
    # (`buckle.training.UnlikelihoodConfig`, docs/corpus.md)
    unlikelihood: float | None = Field(None, ge=0, le=100)
    immunize: ImmunizeSpec = Field(default_factory=ImmunizeSpec)
    curation: CurationSpec = Field(default_factory=CurationSpec)

    _distinct_parts = field_validator("parts")(classmethod(
        lambda cls, value: distinct_parts(value)))

    max_asr: float | None = Field(None, ge=0, le=1)  # `auto`: allowed ASR rise over the base
    auto_max_rounds: int = Field(3, ge=1, le=20)  # `auto`: budget of `post` restore rounds
    curated_file: str | None = None  # use this chat JSONL as the safety corpus (no curation)
    refusal_prompts: str = "advbench"  # `refusal-mix`: harmful prompts answered by refusals
    refusal_offset: int = Field(400, ge=0)  # ... taken past the evaluation window
    eval_prompts: str = "advbench"
    eval_limit: int = Field(20, ge=1)
    benign_prompts: str | None = "chatterbot"
    benign_limit: int = Field(20, ge=1)
    borderline_prompts: str | None = None  # safe prompts that sound unsafe, e.g. "borderline"
    borderline_limit: int = Field(20, ge=1)
    eval_max_new_tokens: int = Field(128, ge=16, le=512)  # per evaluated reply (greedy)


class JobSpec(BaseModel):
    """One job, fully resolved: paths are local files the pipeline may read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    training_file: str
    validation_file: str | None = None
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    safety: SafetySpec = Field(default_factory=SafetySpec)
    seed: int = 0
    work_dir: str  # checkpoints, corpus links and outputs; reusing it resumes the job
    evaluate: bool = True
    # Operational, not a hyperparameter: how often training writes a resumable checkpoint
    # (optimizer steps). Small jobs on the service want frequent ones so a lost worker costs
    # little; it does not change the trained weights.
    checkpoint_every: int = Field(50, ge=1)


class ProgressEvent(BaseModel):
    """One step of progress. `fraction` is the whole job's completion in [0, 1]."""

    stage: Stage
    message: str
    fraction: float = Field(0.0, ge=0, le=1)
    data: dict[str, Any] = Field(default_factory=dict)  # e.g. step, loss, tokens_per_s, path


class JobResult(BaseModel):
    adapter_dir: str
    adapter_sha256: dict[str, str]  # file name -> sha256 hex, for every file of the adapter
    report_path: str | None  # safety_report.json (chart next to it), None if evaluate=False
    safety: dict[str, Any]  # {"base": {...metrics}, "adapter": {...}, "rounds": [...]}
    trained_tokens: int
    checkpoints: list[dict[str, Any]]  # [{"step": int, "path": str, "metrics": {...}}]


ProgressCallback = Callable[[ProgressEvent], None]
CancelCheck = Callable[[], bool]


class JobCancelled(Cancelled):
    """Raised by the pipeline between steps when `should_cancel()` became true."""
