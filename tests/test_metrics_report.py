"""SafetyReport: stable JSON keys, round-trip, atomic write, charts and the CLI table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from buckle.evaluation import (
    JudgedResponse,
    SafetyReport,
    Verdict,
    compare_chart,
    proportion_ci,
    render_table,
)

TOP_KEYS = ["model", "adapter", "prompt_set", "n", "asr", "keyword_asr", "harmful_rate",
            "over_refusal_rate", "borderline_over_refusal_rate",
            "mean_rubric_score", "rubric_unscored", "judges", "benign_prompt_set",
            "borderline_prompt_set", "created_at", "settings", "per_prompt", "per_benign_prompt",
            "per_borderline_prompt", "schema_version"]
ROW_KEYS = ["id", "prompt", "response", "refused", "harmful", "p_harmful", "rubric_score",
            "category", "keyword_refused"]
METRIC_KEYS = ["value", "ci_low", "ci_high", "n"]


def _results(n_refused: int, n: int) -> list[JudgedResponse]:
    return [
        JudgedResponse(
            id=f"advbench-{i}", prompt=f"harmful prompt {i} {{braces}}",
            response="I'm sorry." if i < n_refused else "Sure, step 1 ...",
            verdict=Verdict(refused=i < n_refused, harmful=i >= n_refused,
                            p_harmful=0.1 if i < n_refused else 0.9,
                            score=None if i == n - 1 else (1.0 if i < n_refused else 5.0)),
            category="cyber" if i % 2 else None,
        )
        for i in range(n)
    ]


def _benign(n_refused: int, n: int) -> list[JudgedResponse]:
    return [JudgedResponse(id=f"benign-{i}", prompt=f"recipe {i}", response="ok",
                           verdict=Verdict(refused=i < n_refused)) for i in range(n)]


@pytest.fixture()
def report() -> SafetyReport:
    return SafetyReport.build(
        model="smollm2-135m-instruct", adapter="job-42", prompt_set="advbench-520",
        results=_results(15, 20), benign_results=_benign(2, 10),
        benign_prompt_set="alpaca-benign-100", judges=["refusal", "harm", "rubric"],
        settings={"max_new_tokens": 256, "temperature": 0.0, "seed": 0},
    )


def test_report_has_the_stable_keys(report: SafetyReport) -> None:
    data = report.to_json_dict()
    assert list(data) == TOP_KEYS
    for key in ("asr", "harmful_rate", "over_refusal_rate", "mean_rubric_score"):
        assert list(data[key]) == METRIC_KEYS
    assert list(data["per_prompt"][0]) == ROW_KEYS
    assert list(data["per_benign_prompt"][0]) == ROW_KEYS
    assert data["n"] == 20 and len(data["per_prompt"]) == 20
    lo, hi = proportion_ci(5, 20)
    assert data["asr"] == {"value": 0.25, "ci_low": lo, "ci_high": hi, "n": 20}
    assert data["over_refusal_rate"]["value"] == 0.2 and data["over_refusal_rate"]["n"] == 10
    assert data["mean_rubric_score"]["n"] == 19 and data["rubric_unscored"] == 1
    assert data["created_at"].endswith("+00:00")


def test_metrics_of_judges_not_run_are_null() -> None:
    results = [JudgedResponse(id=str(i), prompt="p", response="r",
                              verdict=Verdict(refused=i == 0)) for i in range(3)]
    rep = SafetyReport.build(model="m", prompt_set="s", results=results, judges=["refusal"])
    data = rep.to_json_dict()
    assert data["asr"]["value"] == pytest.approx(2 / 3)
    assert data["harmful_rate"] is None and data["mean_rubric_score"] is None
    assert data["over_refusal_rate"] is None and data["rubric_unscored"] is None
    assert data["adapter"] is None and data["per_benign_prompt"] == []


def test_json_round_trip_and_atomic_write(report: SafetyReport, tmp_path: Path) -> None:
    path = report.write_json(tmp_path / "out" / "report.json")
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.json"]  # no temp left
    again = SafetyReport.read_json(path)
    assert again == report
    assert json.loads(path.read_text())["per_prompt"][0]["prompt"] == "harmful prompt 0 {braces}"
    # overwrite in place keeps exactly one file and the new content
    report.model_copy(update={"adapter": "job-43"}).write_json(path)
    assert SafetyReport.read_json(path).adapter == "job-43"
    assert len(list(path.parent.iterdir())) == 1


def test_undefined_interval_is_null_not_infinity(tmp_path: Path) -> None:
    rep = SafetyReport.build(
        model="m", prompt_set="s", judges=["rubric"],
        results=[JudgedResponse(id="0", prompt="p", response="r", verdict=Verdict(score=3.0))])
    assert rep.mean_rubric_score.ci_low is None and rep.mean_rubric_score.ci_high is None
    assert SafetyReport.read_json(rep.write_json(tmp_path / "r.json")) == rep


def test_unknown_keys_are_rejected(report: SafetyReport) -> None:
    data = report.to_json_dict()
    data["surprise"] = 1
    with pytest.raises(ValueError):
        SafetyReport.model_validate(data)


def _assert_png(path: Path) -> None:
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_chart_is_a_png(report: SafetyReport, tmp_path: Path) -> None:
    _assert_png(report.write_chart(tmp_path / "chart.png"))


def test_compare_chart(report: SafetyReport, tmp_path: Path) -> None:
    base = SafetyReport.build(model="smollm2-135m-instruct", prompt_set="advbench-520",
                              results=_results(19, 20), judges=["refusal"])
    path = compare_chart([base, report], tmp_path / "cmp.png", labels=["base", "hardened"])
    _assert_png(path)
    with pytest.raises(ValueError):
        compare_chart([base, report], tmp_path / "x.png", labels=["only one"])
    with pytest.raises(ValueError):
        compare_chart([], tmp_path / "y.png")


def test_render_table(report: SafetyReport) -> None:
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(render_table(report))
    text = console.export_text()
    assert "ASR" in text and "25.0%" in text and "over-refusal" in text
    assert "could not score" in text
    bare = SafetyReport.build(model="m", prompt_set="s", judges=["refusal"],
                              results=_results(1, 2))
    console = Console(record=True, width=120)
    console.print(render_table(bare))
    assert "not run" in console.export_text()


def test_written_report_is_world_readable(report: SafetyReport, tmp_path: Path) -> None:
    path = report.write_json(tmp_path / "r.json")
    assert path.stat().st_mode & 0o777 == 0o644


def test_headline_asr_is_harmful_compliance_and_keyword_asr_is_kept() -> None:
    """Not refused but harmless (a responsible answer) is no attack success; the keyword
    column still counts it as not refused."""
    verdicts = [Verdict(refused=False, harmful=True), Verdict(refused=False, harmful=False),
                Verdict(refused=True, harmful=False), Verdict(refused=False, harmful=False)]
    results = [JudgedResponse(id=str(i), prompt="p", response="r", verdict=v,
                              keyword_refused=i == 2) for i, v in enumerate(verdicts)]
    rep = SafetyReport.build(model="m", prompt_set="s", results=results,
                             judges=["refusal", "harm"])
    assert rep.asr.value == 0.25 and rep.asr.n == 4
    assert rep.keyword_asr.value == 0.75 and rep.keyword_asr.n == 4
    assert rep.per_prompt[2].keyword_refused is True
    only_refusal = SafetyReport.build(
        model="m", prompt_set="s", judges=["refusal"],
        results=[JudgedResponse(id="0", prompt="p", response="r", verdict=Verdict(refused=False))])
    assert only_refusal.asr.value == 1.0 and only_refusal.keyword_asr is None
