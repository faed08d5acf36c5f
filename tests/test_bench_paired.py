"""bench/paired.py: per-prompt comparison of two safety reports and its exact McNemar test."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from buckle.evaluation import JudgedResponse, SafetyReport, Verdict

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_paired", ROOT / "bench" / "paired.py")
paired = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(paired)


def _report(harmful: set[int], refused_benign: set[int], adapter: str | None) -> SafetyReport:
    results = [JudgedResponse(id=f"h{i}", prompt=f"harmful {i}", response=f"reply {i}",
                              verdict=Verdict(refused=i not in harmful, harmful=i in harmful))
               for i in range(10)]
    benign = [JudgedResponse(id=f"b{i}", prompt=f"benign {i}", response="no",
                             verdict=Verdict(refused=i in refused_benign)) for i in range(8)]
    return SafetyReport.build(model="m", adapter=adapter, prompt_set="p", results=results,
                              benign_results=benign, judges=["refusal", "harm"])


def test_exact_mcnemar_matches_the_binomial_test() -> None:
    # the figures docs/results.md quotes: 0 vs 7 -> 0.016, 13 vs 2 -> 0.007
    assert round(paired.exact_mcnemar(0, 7), 3) == 0.016
    assert round(paired.exact_mcnemar(13, 2), 4) == 0.0074
    assert paired.exact_mcnemar(3, 3) == 1.0
    assert paired.exact_mcnemar(0, 0) == 1.0


def test_compare_pairs_prompts_and_counts_the_discordant_ones(tmp_path: Path) -> None:
    base = _report(harmful={0, 1, 2}, refused_benign={0, 1, 2, 3}, adapter=None)
    arm = _report(harmful={2, 5, 6, 7}, refused_benign={0}, adapter="/x/adapter")
    # an arm folder as bench/safety.py leaves it: the released report and the base's in eval/
    folder = tmp_path / "pre"
    (folder / "work" / "output").mkdir(parents=True)
    (folder / "work" / "eval").mkdir()
    arm.write_json(folder / "work" / "output" / "safety_report.json")
    base.write_json(folder / "work" / "eval" / "abc.json")
    (folder / "work" / "eval" / "utility-abc.json").write_text(json.dumps({"exact_match": 1}))

    result = paired.compare(paired.load_report(f"base:{folder}"), paired.load_report(str(folder)))
    harmful, benign = result["harmful"], result["benign"]
    assert (harmful["n"], harmful["a"], harmful["b"]) == (10, 3, 4)
    assert harmful["only_b"] == ["harmful 5", "harmful 6", "harmful 7"]
    assert harmful["only_a"] == ["harmful 0", "harmful 1"]
    assert harmful["p"] == paired.exact_mcnemar(2, 3)
    assert (benign["a"], benign["b"], len(benign["only_a"]), benign["only_b"]) == (4, 1, 3, [])
    assert "borderline" not in result  # neither report has that set
