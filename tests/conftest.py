"""Shared fixtures: the real default model and engine, loaded once per test session.

BUCKLE_HOME is left at its default so the converted model is reused across test sessions and
CI runs (the first run pulls and converts it: about a minute).
"""

from __future__ import annotations

import pytest

DEFAULT_MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def default_model():
    from buckle.models import load_model

    return load_model(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def engine(default_model):
    from buckle.generation import GenerationEngine

    return GenerationEngine.from_loaded(default_model)
