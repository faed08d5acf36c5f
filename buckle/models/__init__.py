"""Offline model hub: named presets, pull-once conversion, automatic device/dtype.

Names resolve lazily (PEP 562): `from buckle.models.presets import PRESETS` — what the API
process needs to list base models — must not pay torch's multi-second import.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "default_device": "device", "default_dtype": "device",
    "LoadedModel": "hub", "is_pulled": "hub", "list_presets": "hub", "load_model": "hub",
    "load_tokenizer": "hub", "pull": "hub", "resolve": "hub",
    "PRESETS": "presets", "ModelPreset": "presets", "get_preset": "presets",
    "register_preset": "presets",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'buckle.models' has no attribute {name!r}")
    value = getattr(import_module(f"buckle.models.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
