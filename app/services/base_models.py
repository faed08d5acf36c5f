"""The base models jobs may start from: Buckle's named presets."""

from __future__ import annotations

import importlib.util
import sys
from functools import lru_cache
from types import ModuleType

import buckle


def _presets_module() -> ModuleType:
    """`buckle.models.presets` without running `buckle/models/__init__.py`, which imports torch
    (seconds, and hundreds of MB per API process) for what is a table of names here. Registered
    under its real name, so a later `import buckle.models` reuses this very module."""
    name = "buckle.models.presets"
    if name in sys.modules:
        return sys.modules[name]
    path = f"{buckle.__path__[0]}/models/presets.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=1)
def base_models() -> dict[str, str]:
    """name -> description."""
    return {name: p.description for name, p in _presets_module().PRESETS.items()}
