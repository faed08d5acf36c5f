"""`CurationConfig`: every knob of one CTRL curation run, frozen and content-hashed.

Why frozen and hashed? A curated dataset is expensive (R rounds x k beams x |grid| samples per
example), so results are cached and reported by `config_hash()`. The hash is the sha256 of the
canonical JSON (sorted keys, no whitespace), so it is the same in every process and on every
machine, and any change to any knob gives a different hash (and therefore a fresh cache entry).

CTRL (Liu et al., "Buckle Up", arXiv 2410.02220) revises each response for R rounds: every round
samples one revision per (temperature, top_p) grid point from each of the k beams, drops the
candidates whose quality falls below the floor, and keeps the k best by the perplexity objective.
"""

from __future__ import annotations

import hashlib
import json
import string
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from buckle.errors import UnknownNameError

Objective = Literal["maximize", "minimize"]
DEFAULT_GRID: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0)

# Short and concrete on purpose: small target models (the reviser is the target by default)
# follow one plain instruction far better than a list of requirements. Measured on
# smollm2-135m-instruct, 5 chatterbot items x 4 samples: this wording gave a safety cue in 15% of
# samples, a longer "keep every fact ... add where it fits" prompt in 0-5%.
DEFAULT_REVISION_PROMPT = (
    "Rewrite the answer below to the question so that it stays helpful and also mentions "
    "safety (a risk, a precaution, or when to ask an expert). Write only the new answer.\n\n"
    "Question: {query}\n"
    "Answer: {response}"
)
TEMPLATE_FIELDS = frozenset({"query", "response"})
OPTIONAL_FIELDS = frozenset({"theme"})
# CTRL v2: each item's revision is seeded with one safety theme (rotated by item index), as the
# method's revisions are seeded with safety keywords; small revisers follow "weave in X" far
# more often than "mention safety".
THEMED_REVISION_PROMPT = (
    "Rewrite the answer below to the question so that it stays helpful and also includes one "
    "practical safety point about {theme}. Write only the new answer.\n\n"
    "Question: {query}\n"
    "Answer: {response}"
)
SAFETY_THEMES: tuple[str, ...] = (
    "a risk to watch out for", "a precaution to take first", "when to ask a professional",
    "protecting your health", "keeping other people safe", "staying within the law",
    "keeping personal information private", "handling tools or chemicals safely",
    "avoiding scams and fraud", "looking after children or pets",
)


class CurationConfig(BaseModel):
    """Knobs of a curation run. Build with `CurationConfig(...)` or `CurationConfig.preset(...)`.

    Attributes:
        rounds: R, revision rounds per example (the paper uses 5).
        beam: k, candidates kept after each round (the paper uses 3).
        temperatures, top_ps: the sampling grid; every round samples their full product.
        max_new_tokens: length cap of one revision.
        objective: "maximize" perplexity (Buckle Up: high-perplexity, safety-flavoured text shifts
            the fine-tune's distribution the most, which is what hardens it) or "minimize" (the
            earlier clean-data-curation variant, which makes the data *more* model-typical).
        quality_floor: tau, a *relative* floor: a candidate is admissible only if each quality
            score (helpfulness, readability) is >= tau x the original response's score. 0.9 lets
            a revision lose at most 10% of either while it chases the objective; 1.0 forbids any
            loss; 0 disables the floor.
        min_retention: absolute floor on the share of the original response's content words a
            revision keeps (`scorers.content_retention`; our addition, not in the paper: it stops
            "safety always comes first" from replacing the facts). 0 disables it.
        safety_weight: weight of the safety-implication score in the beam's ranking key,
            key = +/-log(perplexity) + safety_weight x safety (log-PPL of chat text is ~1-4, the
            safety score is in [0, 1]; 0 ranks by perplexity alone).
        helpfulness_scorer, readability_scorer, safety_scorer: names in the scorer registry
            (`buckle.curation.scorers`); resolved when the run starts, not here, so a custom
            scorer may be registered after the config is built.
        revision_prompt: template sent to the reviser; must use exactly {query} and {response}
            (write literal braces as {{ }}).
        drop_prompt_echoes: drop a revision that repeats the revision prompt's scaffolding (a
            "Question:" / "Answer:" label or 8+ words of its instructions that the original
            does not contain; `search.prompt_echo`). Our addition: small revisers sometimes
            continue the prompt instead of answering, and such text passes every floor.
        reviser_model: model that writes revisions; None = the target model itself (as in the
            paper: the model revises towards text that is unusual *for itself*).
        seed: base seed of all sampling, so a run is reproducible.
        themes: safety themes, one per item (item index modulo their number), filled into the
            template's optional {theme}; () = no theme (then the template must not use it).
        min_safety: absolute floor on the safety-implication score (0 = off): a revision that
            carries no safety implication is not admissible, and an item none of whose
            revisions passes is left out of a v2 corpus rather than kept as the original.
        cut_truncated: a candidate stopped by max_new_tokens is cut after its last complete
            sentence (`buckle.curation.text.cut_at_sentence_end`) instead of being dropped.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    rounds: int = Field(5, ge=1)
    beam: int = Field(3, ge=1)
    temperatures: tuple[float, ...] = DEFAULT_GRID
    top_ps: tuple[float, ...] = DEFAULT_GRID
    max_new_tokens: int = Field(256, ge=1)
    objective: Objective = "maximize"
    quality_floor: float = Field(0.9, ge=0.0, le=1.0)
    min_retention: float = Field(0.3, ge=0.0, le=1.0)
    safety_weight: float = Field(1.0, ge=0.0)
    helpfulness_scorer: str = "helpfulness"
    readability_scorer: str = "readability"
    safety_scorer: str = "safety_implication"
    revision_prompt: str = DEFAULT_REVISION_PROMPT
    drop_prompt_echoes: bool = True
    reviser_model: str | None = None
    seed: int = 0
    themes: tuple[str, ...] = ()
    min_safety: float = Field(0.0, ge=0.0, le=1.0)
    cut_truncated: bool = False

    @field_validator("temperatures")
    @classmethod
    def _check_temperatures(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("temperatures is empty; the sampling grid needs at least one value")
        bad = [t for t in value if not t > 0]
        if bad:
            raise ValueError(f"temperatures must be > 0 (sampling, not greedy); got {bad}")
        return value

    @field_validator("top_ps")
    @classmethod
    def _check_top_ps(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("top_ps is empty; the sampling grid needs at least one value")
        bad = [p for p in value if not 0 < p <= 1]
        if bad:
            raise ValueError(f"top_ps must be in (0, 1]; got {bad}")
        return value

    @field_validator("revision_prompt")
    @classmethod
    def _check_template(cls, value: str) -> str:
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        except ValueError as exc:
            raise ValueError(f"revision_prompt is not a valid format string: {exc}") from None
        if not TEMPLATE_FIELDS <= names <= TEMPLATE_FIELDS | OPTIONAL_FIELDS:
            raise ValueError(
                "revision_prompt must contain the placeholders {query} and {response}, and may "
                f"contain {{theme}} (found {sorted(names) or 'none'}); write literal braces as "
                "{{{{ }}}}"
            )
        return value

    @model_validator(mode="after")
    def _themes_match_template(self) -> CurationConfig:
        uses_theme = "{theme}" in self.revision_prompt.replace("{{", "").replace("}}", "")
        if uses_theme and not self.themes:
            raise ValueError("revision_prompt uses {theme} but themes is empty")
        if self.themes and not uses_theme:
            raise ValueError("themes are set but revision_prompt has no {theme} placeholder")
        return self

    # ----------------------------------------------------------------- derived
    @property
    def grid(self) -> tuple[tuple[float, float], ...]:
        """Every (temperature, top_p) pair sampled per beam per round."""
        return tuple((t, p) for t in self.temperatures for p in self.top_ps)

    def theme_for(self, index: int) -> str:
        return self.themes[index % len(self.themes)] if self.themes else ""

    def render_revision_prompt(self, query: str, response: str, index: int = 0) -> str:
        """The reviser's prompt for item `index` (which picks its theme)."""
        return self.revision_prompt.format(query=query, response=response,
                                           theme=self.theme_for(index))

    # ----------------------------------------------------------------- identity
    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace; the input of `config_hash`."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True,
                          separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> CurationConfig:
        return cls.model_validate_json(text)

    def config_hash(self) -> str:
        """sha256 hex of `to_json()`: stable across processes, changes with any knob."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> CurationConfig:
        """A named grid ("quick" for smoke runs, "paper" for the published setup) + overrides."""
        try:
            base = PRESETS[name]
        except KeyError:
            raise UnknownNameError("curation preset", name, list(PRESETS)) from None
        return cls(**{**base, **overrides})


PRESETS: dict[str, dict[str, Any]] = {
    # 4 samples per beam per round, 2 rounds, beam 2: minutes on CPU, for smoke tests and demos.
    "quick": {"temperatures": (0.4, 0.8), "top_ps": (0.7, 1.0), "rounds": 2, "beam": 2},
    # The paper's 5x5 grid, 5 rounds, beam 3 (= the class defaults).
    "paper": {"temperatures": DEFAULT_GRID, "top_ps": DEFAULT_GRID, "rounds": 5, "beam": 3},
    # CTRL v2 on a CPU budget: the quick grid with themed seeds, the method's lenient floors
    # (0.1x the original's readability/helpfulness, as TamperBench's re-implementation), a
    # revision must carry a safety implication, and capped candidates are cut at a sentence end.
    "v2": {"temperatures": (0.4, 0.8), "top_ps": (0.7, 1.0), "rounds": 2, "beam": 2,
           "quality_floor": 0.1, "min_retention": 0.1, "min_safety": 0.2, "cut_truncated": True,
           "themes": SAFETY_THEMES, "revision_prompt": THEMED_REVISION_PROMPT},
}
