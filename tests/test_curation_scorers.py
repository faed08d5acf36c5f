"""Default scorers rank obvious cases correctly, stay in [0, 1]; the registry is explicit."""

from __future__ import annotations

import pytest

from buckle.curation import (
    SCORERS,
    available_scorers,
    flesch_reading_ease,
    get_scorer,
    helpfulness,
    readability,
    register_scorer,
    safety_implication,
)
from buckle.curation.scorers import count_syllables
from buckle.errors import UnknownNameError

QUERY = "How do I clean a cast iron pan?"
GOOD = ("Rinse the cast iron pan with hot water and scrub it with a brush. Dry the pan fully "
        "on the stove, then rub a thin layer of oil over it so it does not rust.")
SAFE = ("Rinse the cast iron pan with hot water and scrub it with a brush. Be careful: the "
        "pan stays hot, so use an oven mitt to protect your hands and avoid burns. Dry it "
        "fully, then oil it lightly; keep the oil away from the flame for safety.")
OFF_TOPIC = "Paris is the capital of France and has many museums."
REFUSAL = "I'm sorry, but I cannot help with cleaning a cast iron pan."
HARD = ("Notwithstanding considerable methodological heterogeneity, contemporaneous "
        "investigations substantiate the hypothesis that institutionalized interdisciplinary "
        "collaboration characteristically accelerates organizational innovation.")
EASY = "The cat sat on the mat. It was warm. The sun was out. She was glad."
EDGE = ["", "   ", "!!!", "a", "word " * 500, "Safety. " * 100, "\n\n", "é ü 漢字",
        "I cannot.", HARD, EASY, GOOD, SAFE, OFF_TOPIC, REFUSAL]


@pytest.mark.parametrize("name", ["readability", "safety_implication", "helpfulness"])
def test_defaults_are_registered_and_bounded(name):
    fn = get_scorer(name)
    for query in ("", QUERY, "???"):
        for response in EDGE:
            value = fn(query, response)
            assert isinstance(value, float) and 0.0 <= value <= 1.0, (name, query, response)


def test_empty_responses_score_zero():
    for fn in (readability, safety_implication, helpfulness):
        assert fn(QUERY, "") == 0.0 and fn(QUERY, "  \n ") == 0.0


def test_syllable_heuristic_on_common_words():
    expected = {"cat": 1, "make": 1, "table": 2, "people": 2, "whale": 1, "baked": 1,
                "wanted": 2, "boxes": 2, "beautiful": 3, "responsible": 4, "the": 1}
    assert {w: count_syllables(w) for w in expected} == expected


def test_readability_prefers_plain_prose():
    assert readability("", EASY) > readability("", GOOD) > readability("", HARD)
    assert readability("", HARD) == 0.0  # Flesch is negative there, clipped
    assert flesch_reading_ease(HARD) < 0 < flesch_reading_ease(EASY)


def test_safety_implication_ranks_safety_cues():
    assert safety_implication(QUERY, SAFE) > safety_implication(QUERY, GOOD)
    assert safety_implication(QUERY, OFF_TOPIC) == 0.0
    one = "Mix the flour and water. Knead for ten minutes. Bake it. Be careful, the oven is hot."
    woven = ("Mix the flour and water safely. Knead with clean hands. Bake it carefully, "
             "using mitts for protection. Be careful, the oven is hot.")
    assert 0 < safety_implication("", one) < safety_implication("", woven)
    assert safety_implication("", "Consult a professional before use.") > 0
    assert safety_implication("", "This is illegal and harmful.") > 0


def test_helpfulness_ranks_on_topic_developed_answers_first():
    good = helpfulness(QUERY, GOOD)
    assert good > helpfulness(QUERY, OFF_TOPIC)
    assert good > helpfulness(QUERY, REFUSAL)
    assert good > helpfulness(QUERY, "Clean the pan.")  # a stub
    assert good > helpfulness(QUERY, "pan " * 60)  # repetition is not development
    assert helpfulness(QUERY, SAFE) >= 0.9 * good  # a safety-conscious revision keeps quality


def test_registry_is_explicit():
    assert {"readability", "safety_implication", "helpfulness"} <= set(available_scorers())
    with pytest.raises(UnknownNameError, match="helpfulness"):
        get_scorer("nope")

    def length(query: str, response: str) -> float:
        return min(1.0, len(response) / 100)

    try:
        register_scorer("test_length", length)
        register_scorer("test_length", length)  # same function again: no-op
        assert get_scorer("test_length") is length
        with pytest.raises(ValueError, match="already registered"):
            register_scorer("test_length", lambda q, r: 0.0)
        register_scorer("test_length", readability, replace=True)
        assert get_scorer("test_length") is readability
        with pytest.raises(TypeError):
            register_scorer("test_bad", "not callable")  # type: ignore[arg-type]
    finally:
        SCORERS.pop("test_length", None)
