"""The error answers each operation documents in the OpenAPI document.

Every error has one body shape (`ErrorResponse`); this module gives each status its meaning once,
so a route lists the statuses it can really return and nothing else (FastAPI's default 422 is
removed in `app.main`: Buckle answers validation errors with 400, as OpenAI does).
"""

from __future__ import annotations

from typing import Any

from app.schemas.common import ErrorResponse

_MEANING = {
    400: "Invalid request: `error.param` names the field (dotted path) and `error.message` "
         "says how to fix it",
    401: "Missing, malformed or revoked API key",
    403: "Not allowed on this resource (e.g. deleting a base model)",
    404: "No such resource in your organization (another organization's id answers the same)",
    409: "Conflicts with the resource's current state",
    413: "Larger than the upload limit (BUCKLE_MAX_UPLOAD_BYTES)",
    429: "Too many requests, or too many unfinished jobs, for your organization; retry after "
         "`Retry-After` seconds",
    503: "A dependency (database or job queue) is unavailable; nothing was started",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.",
                                "schema": {"type": "integer"}}}


def error_responses(*statuses: int, description: str | None = None) -> dict[int | str, Any]:
    """`responses=` entries for `statuses` (a given description replaces the default of each)."""
    out: dict[int | str, Any] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorResponse,
                                 "description": description or _MEANING[status]}
        if status == 429:
            entry["headers"] = _RETRY_AFTER
        out[status] = entry
    return out


# What every route behind an API key can answer: bad parameters, a bad key, the rate limit.
AUTHENTICATED = error_responses(400, 401, 429)
