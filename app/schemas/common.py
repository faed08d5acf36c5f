"""Shapes shared by every resource: list pages and the one error envelope."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Every request body: no coercion ("3" is not 3, true is not 1) and no unknown fields.
STRICT_INPUT = ConfigDict(strict=True, extra="forbid")


class ListPublic(BaseModel):
    object: Literal["list"] = "list"
    has_more: bool = False


class CursorListPublic(ListPublic):
    """A page of a cursor-paginated list: pass `last_id` as `after` for the next page."""

    first_id: str | None = None
    last_id: str | None = None


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class ErrorDetail(BaseModel):
    message: str = Field(description="What went wrong, where, and how to fix it.")
    type: str = Field(description="invalid_request_error, authentication_error, "
                                  "rate_limit_error or server_error.")
    param: str | None = Field(None, description="The request field at fault (dotted path), "
                                                "when there is one.")
    code: str | None = Field(None, description="Machine-readable reason, e.g. file_not_found.")


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: OpenAI's error envelope, so the SDK raises typed exceptions."""

    error: ErrorDetail
