"""Offline model hub: named presets, pull-once conversion, automatic device/dtype."""

from buckle.models.device import default_device, default_dtype
from buckle.models.hub import (
    LoadedModel,
    is_pulled,
    list_presets,
    load_model,
    load_tokenizer,
    pull,
    resolve,
)
from buckle.models.presets import PRESETS, ModelPreset, get_preset, register_preset

__all__ = [
    "PRESETS", "LoadedModel", "ModelPreset", "default_device", "default_dtype", "get_preset",
    "is_pulled", "list_presets", "load_model", "load_tokenizer", "pull",
    "register_preset", "resolve",
]
