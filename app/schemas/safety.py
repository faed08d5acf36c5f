"""The `safety` block of a job as the API accepts it: names and ids only, every knob bounded.

`buckle.pipeline.spec.SafetySpec` is the library's contract and takes local paths (a researcher
on their own machine). Over HTTP a path would let one organization read another's files, so this
mirror accepts only built-in names and the caller's own file ids (`x-buckle-ref` fields, resolved
by `app.services.data_refs`), types are strict (`"3"` is not 3), and every number has an upper
bound so no request can ask a worker for unbounded work. A test keeps the field names equal to
`SafetySpec`'s, so API and library cannot drift.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from app.schemas.common import STRICT_INPUT
from app.schemas.refs import ref_field
from buckle.curation.config import CurationConfig
from buckle.pipeline.spec import (
    DEFAULT_ANCHORS,
    DEFAULT_PARTS,
    DEFAULT_RESPONSIBLE,
    CorpusPart,
    ImmunizeSpec,
    PolicyName,
    distinct_parts,
)

# Upper bounds of what a customer can ask for (documented in docs/service.md).
MAX_CURATION_ITEMS = 2000  # TamperBench's CTRL corpus size
MAX_OFFSET = 100_000
MAX_EVAL_PROMPTS = 1000
MAX_ROUNDS, MAX_BEAM, MAX_GRID_VALUES, MAX_NEW_TOKENS = 10, 8, 8, 1024
# items x rounds x beam x |grid|: the paper's setup on 2,000 items is 750,000 samples.
MAX_CURATION_SAMPLES = 1_000_000

Temperature = Annotated[float, Field(gt=0, le=2)]
TopP = Annotated[float, Field(gt=0, le=1)]
STRICT = ConfigDict(**STRICT_INPUT, frozen=True)


class CurationOverrides(BaseModel):
    """The CTRL knobs a customer may change (an allow-list; `buckle.curation.CurationConfig`)."""

    model_config = STRICT

    rounds: int | None = Field(None, ge=1, le=MAX_ROUNDS)
    beam: int | None = Field(None, ge=1, le=MAX_BEAM)
    temperatures: list[Temperature] | None = Field(None, min_length=1, max_length=MAX_GRID_VALUES)
    top_ps: list[TopP] | None = Field(None, min_length=1, max_length=MAX_GRID_VALUES)
    max_new_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS)
    objective: Literal["maximize", "minimize"] | None = None
    quality_floor: float | None = Field(None, ge=0, le=1)
    min_retention: float | None = Field(None, ge=0, le=1)
    safety_weight: float | None = Field(None, ge=0, le=10)
    revision_prompt: str | None = Field(None, min_length=1, max_length=4000)
    drop_prompt_echoes: bool | None = None
    min_safety: float | None = Field(None, ge=0, le=1)
    cut_truncated: bool | None = None
    themes: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        None, max_length=64)
    reviser_model: str | None = ref_field("base-model", None,
                                          description="Model that writes the revisions.")

    @model_serializer(mode="wrap")
    def _only_given(self, handler):
        # Unset knobs are left out, so the stored job and the library config see only what
        # the customer chose (the preset fills in the rest).
        return {k: v for k, v in handler(self).items() if v is not None}

    def given(self) -> dict[str, object]:
        return self.model_dump()


class CurationIn(BaseModel):
    model_config = STRICT

    source: str = ref_field("conversations", "chatterbot",
                            description="Texts to revise into the safety corpus.")
    limit: int = Field(64, ge=1, le=MAX_CURATION_ITEMS)
    offset: int = Field(200, ge=0, le=MAX_OFFSET)
    preset: Literal["quick", "paper", "v2"] = "quick"
    overrides: CurationOverrides = Field(default_factory=CurationOverrides)

    @model_validator(mode="after")
    def _bounded(self) -> CurationIn:
        # Build the library config now: an inconsistent override (a template without {query})
        # is a 400 here, not a failed job later.
        try:
            config = CurationConfig.preset(self.preset, **self.overrides.given())
        except ValidationError as exc:
            raise ValueError("; ".join(f"overrides.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                       for e in exc.errors())) from None
        samples = self.limit * config.rounds * config.beam * len(config.grid)
        if samples > MAX_CURATION_SAMPLES:
            raise ValueError(
                f"this curation asks for {samples:,} samples (limit × rounds × beam × "
                f"temperatures × top_ps); the most one job may ask for is "
                f"{MAX_CURATION_SAMPLES:,}: lower limit, rounds, beam or the grid")
        return self


class OwnVoiceIn(BaseModel):
    """Prompts the base model answers in its own voice (`SafetySpec.responsible` / `.anchors`)."""

    model_config = STRICT

    source: str = ref_field("prompts", description="Prompts the base model answers.")
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    limit: int = Field(200, ge=1, le=MAX_CURATION_ITEMS)
    max_new_tokens: int = Field(160, ge=16, le=MAX_NEW_TOKENS)


class ImmunizeIn(BaseModel):
    """`pre`'s immunize objective (`SafetySpec.immunize`; docs/corpus.md)."""

    model_config = STRICT

    method: Literal["sft", "booster"] = Field(
        "booster", description="`booster` (the documented `pre` objective) adds Booster's "
        "harmful-perturbation term to the immunize stage (three passes per step instead of "
        "one); `sft` trains on the curated corpus alone.")
    layout: Literal["shared", "merged"] = Field(
        "shared", description="`merged`: the customer's LoRA trains fresh on the immunized "
        "model (Booster's layout); the released adapter stacks both (rank 2 x lora_r).")
    harmful_source: str = ref_field(
        "conversations", "harmful-qa", description="Harmful (prompt, answer) pairs of the "
        "`booster` term; never trained on directly.")
    harmful_offset: int = Field(64, ge=0, le=MAX_OFFSET)
    harmful_limit: int = Field(200, ge=1, le=MAX_CURATION_ITEMS)
    reply_words: int = Field(48, ge=1, le=2000)
    weight: float = Field(5.0, gt=0, le=100)
    step: float = Field(0.1, gt=0, le=10)
    plasticity: float | None = Field(
        None, ge=0, le=100, description="With `booster`: weight of the benign-plasticity term "
        "(the loss of `benign_source` pairs after one normalised step on them) that keeps the "
        "customer's task learnable; unset = the documented 1 (off with `sft`), 0 = off. Two "
        "more passes per step.")
    benign_source: str = ref_field(
        "conversations", "chatterbot", description="Benign (prompt, answer) pairs of the "
        "plasticity term; the adapter fits them at a look-ahead point, so their style shows in "
        "its replies.")
    benign_offset: int = Field(200, ge=0, le=MAX_OFFSET)
    benign_limit: int = Field(200, ge=1, le=MAX_CURATION_ITEMS)

    @model_validator(mode="after")
    def _library_rules(self) -> ImmunizeIn:
        # the library's cross-field rules (plasticity only with booster): a 400 now, not a
        # failed job later
        try:
            ImmunizeSpec(**self.model_dump())
        except ValidationError as exc:
            raise ValueError("; ".join(e["msg"].removeprefix("Value error, ")
                                       for e in exc.errors())) from None
        return self


class SafetyIn(BaseModel):
    """Where and how curated safety data is applied (see `SafetySpec` for the semantics)."""

    model_config = STRICT

    policy: PolicyName = "during"
    curated_ratio: float = Field(0.25, gt=0, lt=1)
    parts: list[CorpusPart] = Field(list(DEFAULT_PARTS), min_length=1, max_length=3)
    responsible: OwnVoiceIn = Field(default_factory=lambda: OwnVoiceIn(**DEFAULT_RESPONSIBLE))
    anchors: OwnVoiceIn = Field(default_factory=lambda: OwnVoiceIn(**DEFAULT_ANCHORS))
    safety_epochs: int | None = Field(None, ge=1, le=50)
    safety_learning_rate: float | None = Field(None, gt=0, le=1e-1)
    restore_share: float | None = Field(None, gt=0, le=1)
    unlikelihood: float | None = Field(None, ge=0, le=100)
    immunize: ImmunizeIn = Field(default_factory=ImmunizeIn)

    _distinct_parts = field_validator("parts")(classmethod(
        lambda cls, value: distinct_parts(value)))
    curation: CurationIn = Field(default_factory=CurationIn)
    max_asr: float | None = Field(None, ge=0, le=1)
    auto_max_rounds: int = Field(3, ge=1, le=20)
    curated_file: str | None = ref_field(
        "training-file", None, description="Use this chat file as the safety corpus instead of "
                                           "curating one.")
    refusal_prompts: str = ref_field("prompts", "advbench",
                                     description="`refusal-mix`: harmful prompts to refuse.")
    refusal_offset: int = Field(400, ge=0, le=MAX_OFFSET)
    eval_prompts: str = ref_field("prompts", "advbench",
                                  description="Harmful prompts of the safety report.")
    eval_limit: int = Field(20, ge=1, le=MAX_EVAL_PROMPTS)
    benign_prompts: str | None = ref_field("prompts", "chatterbot",
                                           description="Benign prompts for over-refusal.")
    benign_limit: int = Field(20, ge=1, le=MAX_EVAL_PROMPTS)
    borderline_prompts: str | None = ref_field(
        "prompts", None, description="Safe prompts that sound unsafe, for over-refusal on the "
                                     "hard case (e.g. `borderline`).")
    borderline_limit: int = Field(20, ge=1, le=MAX_EVAL_PROMPTS)
    eval_max_new_tokens: int = Field(
        128, ge=16, le=512, description="New tokens of each evaluated reply (greedy). On the "
        "dev split the judges' verdicts on the first 48, 64 or 96 tokens equalled those on 128 "
        "(docs/bench/reply_length.json).")
