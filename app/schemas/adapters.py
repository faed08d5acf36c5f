"""Adapters (released LoRA fine-tunes) and models (bases + the organization's fine-tunes)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from app.schemas.common import CursorListPublic


class AdapterPublic(BaseModel):
    id: str
    object: Literal["adapter"] = "adapter"
    created_at: int
    base_model: str
    policy: str
    fine_tuning_job_id: str
    sha256: str = Field(description="sha256 of the archive served by /content.")
    bytes: int
    files: dict[str, str] = Field(description="sha256 of each PEFT file in the archive.")
    safety_report: dict[str, Any] | None = None


class AdapterListPublic(CursorListPublic):
    data: list[AdapterPublic]


class ModelPublic(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelListPublic(CursorListPublic):
    data: list[ModelPublic]




class ModelDeleted(BaseModel):
    id: str
    object: Literal["model"] = "model"
    deleted: bool = True
