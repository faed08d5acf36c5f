"""CurationConfig: defaults, presets, validation, and a content hash stable across processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from buckle.curation import DEFAULT_REVISION_PROMPT, CurationConfig
from buckle.errors import UnknownNameError


def test_defaults_are_the_paper_setup():
    cfg = CurationConfig()
    assert (cfg.rounds, cfg.beam, cfg.max_new_tokens) == (5, 3, 256)
    assert cfg.temperatures == cfg.top_ps == (0.2, 0.4, 0.6, 0.8, 1.0)
    assert cfg.objective == "maximize" and cfg.reviser_model is None
    assert len(cfg.grid) == 25
    assert CurationConfig.preset("paper") == cfg


def test_quick_preset_and_overrides():
    quick = CurationConfig.preset("quick")
    assert quick.grid == ((0.4, 0.7), (0.4, 1.0), (0.8, 0.7), (0.8, 1.0))
    assert (quick.rounds, quick.beam) == (2, 2)
    tuned = CurationConfig.preset("quick", objective="minimize", seed=7)
    assert tuned.objective == "minimize" and tuned.seed == 7 and tuned.rounds == 2


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(UnknownNameError, match="quick"):
        CurationConfig.preset("fast")


@pytest.mark.parametrize("bad, match", [
    ({"temperatures": ()}, "temperatures is empty"),
    ({"top_ps": []}, "top_ps is empty"),
    ({"temperatures": (0.5, 0.0)}, "temperatures must be > 0"),
    ({"temperatures": (-1.0,)}, "temperatures must be > 0"),
    ({"top_ps": (0.0,)}, r"top_ps must be in \(0, 1\]"),
    ({"top_ps": (1.1,)}, r"top_ps must be in \(0, 1\]"),
    ({"objective": "maximise"}, "maximize"),
    ({"rounds": 0}, "greater than or equal to 1"),
    ({"beam": 0}, "greater than or equal to 1"),
    ({"quality_floor": 1.5}, "less than or equal to 1"),
    ({"revision_prompt": "Improve: {response}"}, "must contain the placeholders"),
    ({"revision_prompt": "{query} {response} {extra}"}, "must contain the placeholders"),
    ({"revision_prompt": "{query} {response} {"}, "not a valid format string"),
    ({"beam_width": 3}, "Extra inputs are not permitted"),
    ({"safety_weight": float("inf")}, "finite number"),
])
def test_invalid_configs_are_refused_with_a_clear_message(bad, match):
    with pytest.raises(ValidationError, match=match):
        CurationConfig(**bad)


def test_frozen_and_hashable():
    cfg = CurationConfig()
    with pytest.raises(ValidationError):
        cfg.rounds = 2  # type: ignore[misc]
    assert len({cfg, CurationConfig(), CurationConfig(seed=1)}) == 2


def test_equal_configs_hash_equal_and_ints_normalize():
    a = CurationConfig(temperatures=[1, 0.5], top_ps=(1,))
    b = CurationConfig(temperatures=(1.0, 0.5), top_ps=(1.0,))
    assert a == b and a.config_hash() == b.config_hash()
    assert len(a.config_hash()) == 64


@pytest.mark.parametrize("change", [
    {"rounds": 4}, {"beam": 2}, {"temperatures": (0.2, 0.4)}, {"top_ps": (0.9,)},
    {"max_new_tokens": 128}, {"objective": "minimize"}, {"quality_floor": 0.8},
    {"safety_weight": 0.5}, {"helpfulness_scorer": "judge"}, {"readability_scorer": "x"},
    {"safety_scorer": "y"}, {"revision_prompt": "Q: {query}\nA: {response}"},
    {"reviser_model": "qwen2.5-coder-0.5b-instruct"}, {"seed": 1}, {"min_retention": 0.5},
    {"drop_prompt_echoes": False},
    {"themes": ("x",), "revision_prompt": "{theme} {query} {response}"},
    {"min_safety": 0.2},
    {"cut_truncated": True},
])
def test_every_knob_changes_the_hash(change):
    assert CurationConfig(**change).config_hash() != CurationConfig().config_hash()


def test_every_field_is_covered_by_the_knob_test():
    # If a field is added, add it to test_every_knob_changes_the_hash too.
    assert len(CurationConfig.model_fields) == 19


def test_json_round_trip_is_exact():
    cfg = CurationConfig.preset("quick", reviser_model="other", safety_weight=0.25)
    text = cfg.to_json()
    assert '"beam":2' in text and text.index('"beam"') < text.index('"rounds"')  # sorted keys
    back = CurationConfig.from_json(text)
    assert back == cfg and back.config_hash() == cfg.config_hash()


def test_hash_is_stable_across_processes():
    code = ("from buckle.curation.config import CurationConfig as C;"
            "print(C().config_hash()); print(C.preset('quick', seed=3).config_hash())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONHASHSEED": "123"}).stdout.split()
    assert out == [CurationConfig().config_hash(),
                   CurationConfig.preset("quick", seed=3).config_hash()]


def test_revision_prompt_renders_query_and_response():
    text = CurationConfig().render_revision_prompt("How do I bake bread?", "Mix flour.")
    assert "How do I bake bread?" in text and "Mix flour." in text
    assert "safety" in DEFAULT_REVISION_PROMPT and "helpful" in DEFAULT_REVISION_PROMPT
    literal = CurationConfig(revision_prompt="{{json}} {query} {response}")
    assert literal.render_revision_prompt("q", "r") == "{json} q r"
