"""Files: uploads of training data (`fine-tune`) and prompt sets (`evals`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.common import ListPublic


class FilePublic(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["processed"] = "processed"
    status_details: str | None = None
    records: int = Field(description="Valid records (conversations or prompts) in the file.")
    sha256: str
    screening: dict[str, Any] | None = Field(
        None, description="Training files only: harm-judge screening, `{status: pending | done "
                          "| failed, rows, flagged, share, first_lines, judge}`.")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "file-0193a1b2c3d4e5f6a7b8", "object": "file", "bytes": 2048,
        "created_at": 1732790000, "filename": "train.jsonl", "purpose": "fine-tune",
        "status": "processed", "status_details": None, "records": 12,
        "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}]})


class FileListPublic(ListPublic):
    data: list[FilePublic]
    first_id: str | None = None
    last_id: str | None = None


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True
