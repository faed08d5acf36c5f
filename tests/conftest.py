"""Shared fixtures: the real default model and engine, loaded once per test session.

BUCKLE_HOME is left at its default so the converted model is reused across test sessions and
CI runs (the first run pulls and converts it: about a minute).

Generation runs in fp32 throughout the suite (unless BUCKLE_GENERATION_PRECISION says otherwise),
so tests that compare replies across batch layouts, resumes and processes compare exact
replies; the product default (`auto`: bf16 where the CPU multiplies it) has its own tests in
test_generation_precision.py. Worker and service processes the tests start inherit it.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("BUCKLE_GENERATION_PRECISION", "fp32")

DEFAULT_MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def default_model():
    from buckle.models import load_model

    return load_model(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def engine(default_model):
    from buckle.generation import GenerationEngine

    return GenerationEngine.from_loaded(default_model)
