"""The base models jobs may start from: Buckle's named presets."""

from __future__ import annotations

from functools import lru_cache

from buckle.models.presets import PRESETS  # a table of names: no torch import


@lru_cache(maxsize=1)
def base_models() -> dict[str, str]:
    """name -> description."""
    return {name: p.description for name, p in PRESETS.items()}
