"""Typed errors. Each says what went wrong, where, and how to fix it; `app/` maps them to HTTP once."""

from __future__ import annotations

from dataclasses import dataclass, field


class BuckleError(Exception):
    """Base class: anything Buckle raises on purpose."""


class IntegrityError(BuckleError):
    """A downloaded or extracted file does not match its pinned sha256."""

    def __init__(self, what: str, expected: str, actual: str, hint: str = "") -> None:
        self.what, self.expected, self.actual = what, expected, actual
        msg = f"sha256 mismatch for {what}: expected {expected}, got {actual}. Refusing to use it."
        if hint:
            msg += f" {hint}"
        super().__init__(msg)


class ResourceUnavailableError(BuckleError):
    """A registry package or model could not be fetched."""


class UnknownNameError(BuckleError):
    """A name (model preset, data source, judge) is not registered."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        self.kind, self.name, self.known = kind, name, known
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}")


@dataclass(frozen=True)
class LineIssue:
    """One bad line of a dataset file (1-based line number)."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class DatasetFormatError(BuckleError):
    """A dataset file failed validation; nothing from it was accepted.

    Carries *every* bad line so a user fixes the file in one pass, not one error at a time.
    """

    source: str
    issues: list[LineIssue] = field(default_factory=list)
    hint: str = ('Each line must be one JSON object: {"messages": [{"role": "user", "content": '
                 '...}, {"role": "assistant", "content": ...}]} or Alpaca {"instruction", '
                 '"input", "output"}.')

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        shown = "\n".join(f"  {i}" for i in self.issues[:50])
        more = f"\n  ... and {len(self.issues) - 50} more" if len(self.issues) > 50 else ""
        return (
            f"{self.source}: {len(self.issues)} invalid line(s); nothing was accepted.\n"
            f"{shown}{more}\n{self.hint}"
        )


class Cancelled(BuckleError):
    """Work stopped because its caller's `should_cancel()` turned true (checked between steps).

    Whatever finished before the check is kept (curated chunks, checkpoints), so running the
    same work again continues from there.
    """
