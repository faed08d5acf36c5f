"""The safety report: one JSON file per evaluated model/adapter, plus charts and a CLI table.

The JSON keys are a stable contract (the API, the dashboard and CI gates read them), so the
schema is a pydantic model with fixed field order; every metric is `{"value", "ci_low",
"ci_high", "n"}` or null when the judge producing it was not run. Per-prompt rows keep every
response and verdict so a number in the summary can always be traced to the texts behind it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from buckle.atomic import atomic_write_json
from buckle.evaluation import metrics as M
from buckle.evaluation.judges.base import Verdict

# 2: `asr` is harmful compliance (not refused and harmful); `keyword_asr` is the GCG keyword
# figure that version 1 called `asr`.
SCHEMA_VERSION = 2


class MetricSummary(BaseModel):
    """A metric as stored in the report. A CI bound is null when it is undefined (a mean over a
    single value has no spread estimate); JSON has no infinity."""

    model_config = ConfigDict(extra="forbid")

    value: float
    ci_low: float | None
    ci_high: float | None
    n: int

    @classmethod
    def of(cls, metric: M.Metric | None) -> MetricSummary | None:
        if metric is None:
            return None
        lo = metric.low if math.isfinite(metric.low) else None
        hi = metric.high if math.isfinite(metric.high) else None
        return cls(value=metric.value, ci_low=lo, ci_high=hi, n=metric.n)


class PromptResult(BaseModel):
    """One prompt, the model's response, and what the judges said about it."""

    model_config = ConfigDict(extra="forbid")

    id: str
    prompt: str
    response: str
    refused: bool | None = None
    harmful: bool | None = None
    p_harmful: float | None = None
    rubric_score: float | None = None
    category: str | None = None
    keyword_refused: bool | None = None  # the GCG refusal-keyword judge (keyword ASR)

    def verdict(self) -> Verdict:
        return Verdict(refused=self.refused, harmful=self.harmful, score=self.rubric_score,
                       p_harmful=self.p_harmful)


@dataclass
class JudgedResponse:
    """What the runner hands to `build_report`: a response with its (merged) verdict."""

    id: str
    prompt: str
    response: str
    verdict: Verdict
    category: str | None = None
    keyword_refused: bool | None = None

    def to_result(self) -> PromptResult:
        v = self.verdict
        return PromptResult(id=self.id, prompt=self.prompt, response=self.response,
                            refused=v.refused, harmful=v.harmful, p_harmful=v.p_harmful,
                            rubric_score=v.score, category=self.category,
                            keyword_refused=self.keyword_refused)


class SafetyReport(BaseModel):
    """Safety evaluation of one model (optionally with a LoRA adapter) on one prompt set."""

    model_config = ConfigDict(extra="forbid")

    model: str
    adapter: str | None = None
    prompt_set: str
    n: int
    asr: MetricSummary | None = Field(
        default=None, description="attack success rate: harmful compliance (not refused and "
                                  "harmful); the non-refusal rate when no harm judge ran")
    keyword_asr: MetricSummary | None = Field(
        default=None, description="GCG refusal-keyword ASR (not refused), comparable with "
                                  "published keyword figures")
    harmful_rate: MetricSummary | None = None
    over_refusal_rate: MetricSummary | None = None
    borderline_over_refusal_rate: MetricSummary | None = Field(
        default=None, description="declines of safe prompts that sound unsafe (None: no "
                                  "borderline set was evaluated)")
    mean_rubric_score: MetricSummary | None = None
    rubric_unscored: int | None = Field(
        default=None, description="responses the rubric judge could not score (None: not run)")
    judges: list[str] = Field(default_factory=list)
    benign_prompt_set: str | None = None
    borderline_prompt_set: str | None = None
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(
        timespec="seconds"))
    settings: dict[str, Any] = Field(default_factory=dict)
    per_prompt: list[PromptResult] = Field(default_factory=list)
    per_benign_prompt: list[PromptResult] = Field(default_factory=list)
    per_borderline_prompt: list[PromptResult] = Field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        *,
        model: str,
        prompt_set: str,
        results: Sequence[JudgedResponse],
        judges: Sequence[str],
        adapter: str | None = None,
        benign_results: Sequence[JudgedResponse] = (),
        benign_prompt_set: str | None = None,
        borderline_results: Sequence[JudgedResponse] = (),
        borderline_prompt_set: str | None = None,
        settings: dict[str, Any] | None = None,
        confidence: float = 0.95,
        created_at: str | None = None,
    ) -> SafetyReport:
        """Compute every metric from the verdicts. Metrics whose judge did not run are null."""
        verdicts = [r.verdict for r in results]
        benign = [r.verdict for r in benign_results]
        rubric_ran = "rubric" in judges
        extra: dict[str, Any] = {} if created_at is None else {"created_at": created_at}
        return cls(
            model=model, adapter=adapter, prompt_set=prompt_set, n=len(results),
            asr=MetricSummary.of(M.harmful_compliance_rate(verdicts, confidence)),
            keyword_asr=MetricSummary.of(M.asr(
                [Verdict(refused=r.keyword_refused) for r in results
                 if r.keyword_refused is not None], confidence)),
            harmful_rate=MetricSummary.of(M.harmful_rate(verdicts, confidence)),
            over_refusal_rate=MetricSummary.of(M.over_refusal_rate(benign, confidence)),
            borderline_over_refusal_rate=MetricSummary.of(M.over_refusal_rate(
                [r.verdict for r in borderline_results], confidence)),
            mean_rubric_score=MetricSummary.of(M.mean_rubric_score(verdicts, confidence)),
            rubric_unscored=M.unscored_count(verdicts) if rubric_ran else None,
            judges=list(judges), benign_prompt_set=benign_prompt_set,
            borderline_prompt_set=borderline_prompt_set,
            per_borderline_prompt=[r.to_result() for r in borderline_results],
            settings=dict(settings or {}),
            per_prompt=[r.to_result() for r in results],
            per_benign_prompt=[r.to_result() for r in benign_results],
            **extra,
        )

    # ------------------------------------------------------------------ JSON
    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def write_json(self, path: str | Path) -> Path:
        """Write atomically (temp file in the same folder + os.replace): a reader never sees a
        half-written report, and a crash leaves the previous one intact."""
        return atomic_write_json(path, self.to_json_dict())

    @classmethod
    def read_json(cls, path: str | Path) -> SafetyReport:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))

    # ------------------------------------------------------------------ presentation
    @property
    def label(self) -> str:
        """Short name for charts: the adapter if any, else the model."""
        return self.adapter or self.model

    def rates(self) -> dict[str, MetricSummary | None]:
        return {"ASR": self.asr, "Keyword ASR": self.keyword_asr,
                "Harmful rate": self.harmful_rate, "Over-refusal": self.over_refusal_rate,
                **({"Over-refusal (borderline)": self.borderline_over_refusal_rate}
                   if self.borderline_over_refusal_rate else {})}

    def write_chart(self, path: str | Path) -> Path:
        """PNG bar chart of ASR / harmful rate / over-refusal with their CI error bars."""
        return compare_chart([self], path, title=f"{self.label} on {self.prompt_set}")


def _err(v: float, bound: float | None, default: float) -> float:
    return abs(v - (default if bound is None else 100 * bound))


def compare_chart(reports: Sequence[SafetyReport], path: str | Path,
                  labels: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Grouped bar chart (one colour per report, e.g. base vs hardened adapter) of the three
    rates in percent with 95% CI error bars. Metrics a report lacks are drawn as 'n/a'."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    if not reports:
        raise ValueError("compare_chart needs at least one report")
    labels = list(labels) if labels is not None else [r.label for r in reports]
    if len(labels) != len(reports):
        raise ValueError("one label per report")
    names = list(reports[0].rates())
    width = 0.8 / len(reports)
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * len(names) * max(1, len(reports)) / 2), 4.2),
                           dpi=120)
    try:
        for j, (rep, label) in enumerate(zip(reports, labels, strict=True)):
            xs, vals, lo_err, hi_err = [], [], [], []
            for i, name in enumerate(names):
                m = rep.rates()[name]
                x = i - 0.4 + width * (j + 0.5)
                if m is None:
                    ax.text(x, 1, "n/a", ha="center", va="bottom", fontsize=8, color="grey")
                    continue
                v = 100 * m.value
                xs.append(x)
                vals.append(v)
                lo_err.append(_err(v, m.ci_low, v))
                hi_err.append(_err(v, m.ci_high, v))
            bars = ax.bar(xs, vals, width * 0.95, yerr=[lo_err, hi_err], capsize=3, label=label)
            for rect, v in zip(bars, vals, strict=True):
                ax.annotate(f"{v:.1f}", (rect.get_x() + rect.get_width() / 2, v),
                            xytext=(0, 2), textcoords="offset points", ha="center",
                            va="bottom", fontsize=7)
        ax.set_xticks(range(len(names)), names)
        ax.set_ylabel("% of prompts (95% CI)")
        ax.set_ylim(0, 105)
        ax.set_title(title or "Safety evaluation")
        if len(reports) > 1:
            ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def _fmt(m: MetricSummary | None, percent: bool) -> tuple[str, str, str]:
    if m is None:
        return "—", "not run", "—"
    if m.ci_low is None or m.ci_high is None:
        ci = "undefined"
    elif percent:
        ci = f"[{100 * m.ci_low:.1f}, {100 * m.ci_high:.1f}]"
    else:
        ci = f"[{m.ci_low:.2f}, {m.ci_high:.2f}]"
    value = f"{100 * m.value:.1f}%" if percent else f"{m.value:.2f}"
    return value, ci, str(m.n)


def render_table(report: SafetyReport) -> Any:
    """A rich Table summarising the report for the CLI."""
    from rich.table import Table

    title = f"{report.label} · {report.prompt_set}"
    if report.benign_prompt_set:
        title += f" / benign: {report.benign_prompt_set}"
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")
    table.add_column("n", justify="right")
    table.add_row("ASR (harmful compliance)", *_fmt(report.asr, True))
    table.add_row("keyword ASR (GCG, not refused)", *_fmt(report.keyword_asr, True))
    table.add_row("harmful rate", *_fmt(report.harmful_rate, True))
    table.add_row("over-refusal (benign)", *_fmt(report.over_refusal_rate, True))
    if report.borderline_over_refusal_rate:
        table.add_row("over-refusal (borderline)",
                      *_fmt(report.borderline_over_refusal_rate, True))
    table.add_row("mean rubric score (1-5)", *_fmt(report.mean_rubric_score, False))
    if report.rubric_unscored:
        table.caption = f"{report.rubric_unscored} response(s) the rubric judge could not score"
    return table
