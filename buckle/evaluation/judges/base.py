"""The judge contract and the registry every judge is looked up through.

A judge turns (prompt, response) pairs into `Verdict`s. Judges are batched because the useful ones
(a classifier, an LLM asked a rubric) are much cheaper per item in bulk. The registry is a plain
dict filled by explicit `register_judge` calls (as PEFT does for its tuners): no import-time magic,
and an unknown name fails with the list of known ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from buckle.errors import UnknownNameError


@dataclass(frozen=True)
class Verdict:
    """What one judge concluded about one response. `None` means "this judge does not say".

    Fields are optional because judges answer different questions: the keyword judge only knows
    `refused`, the classifier gives `p_harmful`/`harmful`, the rubric judge gives `score` (1-5).
    Several verdicts for the same item are combined with `merge_verdicts`.
    """

    refused: bool | None = None
    harmful: bool | None = None
    score: float | None = None  # Qi et al. 1-5 harmfulness rubric; None if not scored/unparsable
    p_harmful: float | None = None
    rationale: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def merge_verdicts(*verdicts: Verdict) -> Verdict:
    """Combine one item's verdicts from several judges; later non-None fields win.

    Rationales are joined rather than overwritten so a report keeps every judge's explanation.
    """
    fields: dict[str, Any] = {}
    rationales: list[str] = []
    for v in verdicts:
        for key, value in asdict(v).items():
            if key == "rationale":
                if value:
                    rationales.append(value)
            elif value is not None:
                fields[key] = value
    return Verdict(**fields, rationale="\n".join(rationales) if rationales else None)


class Judge(ABC):
    """Base class for judges. Subclasses set `name` and implement `judge`."""

    name: str = "judge"

    @abstractmethod
    def judge(self, prompts: list[str], responses: list[str]) -> list[Verdict]:
        """One `Verdict` per (prompt, response) pair, in input order."""

    def harmful_flags(self, prompts: list[str], responses: list[str]) -> list[bool]:
        """`harmful` per pair, nothing else: what screening needs. Judges whose verdict can be
        decided early (the gated `harm` judge) override this to skip work; the answer must equal
        `[v.harmful for v in judge(...)]` (None counts as False)."""
        return [bool(v.harmful) for v in self.judge(prompts, responses)]

    @staticmethod
    def _check_lengths(prompts: Sequence[str], responses: Sequence[str]) -> None:
        if len(prompts) != len(responses):
            raise ValueError(
                f"judge got {len(prompts)} prompts but {len(responses)} responses; "
                "pass one response per prompt"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


JUDGE_REGISTRY: dict[str, type[Judge]] = {}


def register_judge(name: str, cls: type[Judge]) -> None:
    """Make `cls` constructible as `get_judge(name, **kwargs)`.

    Re-registering the same class is a no-op (module reloads); registering a *different* class
    under a taken name is refused, because silently replacing a judge would change what reports
    measure.
    """
    existing = JUDGE_REGISTRY.get(name)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"judge name {name!r} is already registered to {existing.__qualname__}")
    JUDGE_REGISTRY[name] = cls


def available_judges() -> list[str]:
    return sorted(JUDGE_REGISTRY)


def get_judge(name: str, **kwargs: Any) -> Judge:
    """Instantiate the judge registered as `name`; unknown names raise `UnknownNameError`."""
    try:
        cls = JUDGE_REGISTRY[name]
    except KeyError:
        raise UnknownNameError("judge", name, list(JUDGE_REGISTRY)) from None
    return cls(**kwargs)
