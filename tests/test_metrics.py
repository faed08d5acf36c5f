"""Metric functions: Wilson and t intervals against known values, and the safety metrics."""

from __future__ import annotations

import math

import pytest

from buckle.evaluation import (
    Metric,
    Verdict,
    asr,
    harmful_rate,
    mean_ci,
    mean_rubric_score,
    over_refusal_rate,
    proportion_ci,
    unscored_count,
)
from buckle.evaluation.metrics import t_quantile


@pytest.mark.parametrize("k,n,low,high", [
    (0, 20, 0.0, 0.16113),
    (10, 20, 0.29929, 0.70071),
    (1, 10, 0.01788, 0.40415),
    (20, 20, 0.83887, 1.0),
    (52, 520, 0.07708, 0.12879),
])
def test_wilson_known_values(k: int, n: int, low: float, high: float) -> None:
    lo, hi = proportion_ci(k, n)
    assert lo == pytest.approx(low, abs=5e-5)
    assert hi == pytest.approx(high, abs=5e-5)


def test_wilson_properties() -> None:
    assert proportion_ci(0, 0) == (0.0, 1.0)
    lo90, hi90 = proportion_ci(5, 50, confidence=0.90)
    lo99, hi99 = proportion_ci(5, 50, confidence=0.99)
    assert lo99 < lo90 < 0.1 < hi90 < hi99
    for k in range(31):
        lo, hi = proportion_ci(k, 30)
        assert 0.0 <= lo <= k / 30 <= hi <= 1.0
    with pytest.raises(ValueError):
        proportion_ci(3, 2)
    with pytest.raises(ValueError):
        proportion_ci(1, 2, confidence=1.0)


@pytest.mark.parametrize("q,df,expected", [
    (0.975, 1, 12.7062), (0.975, 4, 2.7764), (0.975, 5, 2.5706), (0.975, 30, 2.0423),
    (0.95, 10, 1.8125), (0.995, 2, 9.9248), (0.025, 5, -2.5706),
])
def test_t_quantile_table_values(q: float, df: int, expected: float) -> None:
    assert t_quantile(q, df) == pytest.approx(expected, abs=1e-4)


def test_t_quantile_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 7, 19, 99, 519):
        for q in (0.9, 0.95, 0.975, 0.995):
            assert t_quantile(q, df) == pytest.approx(stats.t.ppf(q, df), rel=1e-9)


def test_mean_ci_student_t() -> None:
    m = mean_ci([1, 2, 3, 4, 5])
    assert m.value == 3.0 and m.n == 5
    half = 2.7764451 * math.sqrt(2.5 / 5)
    assert (m.low, m.high) == pytest.approx((3 - half, 3 + half), abs=1e-6)
    assert mean_ci([4.0, 4.0, 4.0]) == Metric(4.0, 4.0, 4.0, 3)
    single = mean_ci([2.0])
    assert single.value == 2.0 and single.low == -math.inf and single.high == math.inf
    with pytest.raises(ValueError):
        mean_ci([])


def test_safety_metrics() -> None:
    harmful_prompts = [
        Verdict(refused=True, harmful=False, score=1.0),
        Verdict(refused=False, harmful=True, score=5.0),
        Verdict(refused=False, harmful=False, score=3.0),  # complied but said nothing harmful
        Verdict(refused=True, harmful=None, score=None),   # rubric reply unparsable
    ]
    a = asr(harmful_prompts)
    assert (a.value, a.n) == (0.5, 4)
    assert (a.low, a.high) == pytest.approx(proportion_ci(2, 4))
    h = harmful_rate(harmful_prompts)
    assert (h.value, h.n) == (pytest.approx(1 / 3), 3)
    s = mean_rubric_score(harmful_prompts)
    assert (s.value, s.n) == (3.0, 3)
    assert unscored_count(harmful_prompts) == 1
    benign = [Verdict(refused=True), Verdict(refused=False), Verdict(refused=False),
              Verdict(refused=False)]
    o = over_refusal_rate(benign)
    assert (o.value, o.n) == (0.25, 4)
    assert o.to_dict() == {"value": 0.25, "ci_low": o.low, "ci_high": o.high, "n": 4}


def test_metrics_are_none_when_their_judge_did_not_run() -> None:
    only_refusal = [Verdict(refused=True), Verdict(refused=False)]
    assert harmful_rate(only_refusal) is None
    assert mean_rubric_score(only_refusal) is None
    only_harm = [Verdict(harmful=True, p_harmful=0.9)]
    assert asr(only_harm) is None
    assert over_refusal_rate(only_harm) is None
    assert asr([]) is None
