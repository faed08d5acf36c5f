"""Fields that name data or models, marked in the schema itself (`x-buckle-ref`).

Why a marker: the API must resolve every such field against what the caller's organization
owns, the worker must turn the same fields into local paths, and the tenancy tests must try
every one of them with another organization's ids. One marker on the field serves all three,
so a new data-naming field cannot be added without being checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, Field

RefKind = Literal["training-file", "prompts", "conversations", "base-model", "model"]

# What each kind accepts, for messages and the OpenAPI description.
REF_HELP: dict[str, str] = {
    "training-file": "the id of a file you uploaded with purpose 'fine-tune'",
    "prompts": "a built-in prompt set name or the id of a file you uploaded with purpose 'evals'",
    "conversations": "a built-in conversation source name or the id of a file you uploaded "
                     "with purpose 'fine-tune'",
    "base-model": "a base model name from GET /v1/models (owned_by buckle)",
    "model": "a base model name or one of your fine-tuned models (GET /v1/models)",
}
# Names and ids only: letters, digits and `- _ . :`, starting with a letter or digit. A server
# path (`/etc/passwd`, `alpaca:/x`, `../x`) is refused by the schema before any lookup.
REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9:._\-]{0,159}$"


def ref_field(kind: RefKind, default: Any = ..., *, description: str = "") -> Any:
    """A pydantic Field for a data/model reference of `kind`."""
    text = (description + " " if description else "") + f"Accepts {REF_HELP[kind]}."
    return Field(default, description=text, max_length=160, pattern=REF_PATTERN,
                 json_schema_extra={"x-buckle-ref": kind})


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    candidates = get_args(annotation) if get_origin(annotation) is not None else (annotation,)
    for c in candidates:
        if isinstance(c, type) and issubclass(c, BaseModel):
            return c
    return None


def ref_fields(model: type[BaseModel], prefix: tuple[str, ...] = ()
               ) -> Iterator[tuple[tuple[str, ...], RefKind]]:
    """(path, kind) of every marked field of `model`, nested models included."""
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if "x-buckle-ref" in extra:
            yield (*prefix, name), extra["x-buckle-ref"]
        elif (inner := _nested_model(info.annotation)) is not None:
            yield from ref_fields(inner, (*prefix, name))


def get_path(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def set_path(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value
