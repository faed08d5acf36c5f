"""Resolve the `x-buckle-ref` fields of a request against what the caller's organization owns.

The API checks every reference when a job or evaluation is created (400 with `param` naming the
field); the worker resolves the same references again when it builds the library's `JobSpec`,
turning the organization's own file ids into local paths. No path is ever accepted from, or
written back to, an HTTP client. Another organization's file id is answered exactly like an
unknown one, so the error text is no oracle for what exists.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from app.errors import APIError, bad_request
from app.models import Adapter, File
from app.schemas.refs import REF_HELP, RefKind, get_path, ref_fields, set_path
from app.schemas.safety import SafetyIn
from app.services.base_models import base_models
from app.storage import ArtifactStore
from buckle.data import conversation_sources, list_sources
from buckle.pipeline.spec import ANCHORS_SOURCE, SafetySpec

# The file purpose each kind of reference needs.
_PURPOSE: dict[str, str] = {"training-file": "fine-tune", "conversations": "fine-tune",
                            "prompts": "evals"}


@dataclass(frozen=True)
class Ref:
    """What a reference named: a built-in (name) or one of the organization's rows."""

    name: str
    file: File | None = None
    adapter: Adapter | None = None


def _builtins(kind: RefKind) -> list[str]:
    if kind == "prompts":
        return list(list_sources())
    if kind == "conversations":  # + the anchors part, which CTRL v2 may revise
        return [*conversation_sources(), ANCHORS_SOURCE]
    if kind in ("base-model", "model"):
        return sorted(base_models())
    return []


def _unknown(kind: RefKind, value: str, param: str) -> APIError:
    names = _builtins(kind)
    listed = f" (built-in: {', '.join(names)})" if names else ""
    if kind == "base-model":
        return bad_request(f"Model {value!r} is not available for fine-tuning; base models: "
                           + ", ".join(names), param=param, code="model_not_available")
    if kind == "model":
        return bad_request(f"Unknown model {value!r}: give {REF_HELP[kind]}", param=param,
                           code="model_not_found")
    code = {"training-file": "file_not_found", "prompts": "unknown_prompt_set",
            "conversations": "unknown_source"}[kind]
    what = "file" if kind == "training-file" else "data set"
    return bad_request(f"No such {what}: {value!r} for {param}; it takes {REF_HELP[kind]}"
                       f"{listed} (upload files with POST /v1/files first)", param=param,
                       code=code)


def resolve(session: Session, org_id: str, value: str, kind: RefKind, param: str) -> Ref:
    """The built-in or owned row `value` names, or a 400 that says what `param` accepts."""
    if value in _builtins(kind):
        return Ref(value)
    if kind == "model":
        adapter = session.get(Adapter, value)
        if adapter is not None and adapter.org_id == org_id:
            return Ref(value, adapter=adapter)
        raise _unknown(kind, value, param)
    row = session.get(File, value) if kind in _PURPOSE else None
    if row is None or row.org_id != org_id:
        raise _unknown(kind, value, param)
    if row.purpose != _PURPOSE[kind]:
        raise bad_request(f"File {value} has purpose {row.purpose!r}; {param} needs a file "
                          f"with purpose {_PURPOSE[kind]!r}", param=param,
                          code="invalid_file_purpose")
    return Ref(value, file=row)


def check(session: Session, org_id: str, body: BaseModel) -> dict[tuple[str, ...], Ref]:
    """Resolve every reference of a request body (raises the first bad one as a 400)."""
    data = body.model_dump(mode="json")
    out = {}
    for path, kind in ref_fields(type(body)):
        value = get_path(data, path)
        if value is not None:
            out[path] = resolve(session, org_id, value, kind, ".".join(path))
    return out


def library_safety(session: Session, org_id: str, safety: dict[str, Any],
                   store: ArtifactStore) -> SafetySpec:
    """The stored (API) safety block as the library's `SafetySpec`: file ids become the paths
    of the organization's own stored files; anything else that is not a built-in fails."""
    data = copy.deepcopy(safety)
    for path, kind in ref_fields(SafetyIn):
        value = get_path(data, path)
        if value is None:
            continue
        ref = resolve(session, org_id, str(value), kind, "safety." + ".".join(path))
        if ref.file is not None:
            set_path(data, path, str(store.local_file(ref.file.storage_key)))
    return SafetySpec(**data)
