"""ASGI guards that refuse a request before any route sees it: cheap checks on the raw scope.

Why middleware rather than validation: these inputs break things below the application (a NUL
character is rejected by PostgreSQL's text types with an error, which became a 500; an oversize
body would be read whole before any check).
"""

from __future__ import annotations

import json

from app import errors
from app.core.config import get_settings


async def _refuse(send, status: int, message: str, code: str, param: str | None) -> None:
    body = json.dumps(errors.error_body(message, "invalid_request_error", code, param)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class InputGuard:
    """400 for a NUL character in the path or query of an API route (`%00`, or raw)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            query = scope.get("query_string", b"")
            if "\x00" in scope["path"] or b"%00" in query or b"\x00" in query:
                await _refuse(send, 400, "The URL contains a NUL character (%00); ids and "
                                         "query values are plain text", "invalid_request", None)
                return
        await self.app(scope, receive, send)


class UploadSizeGuard:
    """Refuses an oversize upload from its Content-Length, before the body is read."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/v1/files":
            limit = get_settings().max_upload_bytes
            length = dict(scope["headers"]).get(b"content-length")
            # multipart framing adds a little; the exact file size is checked again after
            if length is not None and length.isdigit() and int(length) > limit + 64 * 1024:
                await _refuse(send, 413, f"File is larger than the limit of {limit} bytes; split "
                                         "it or ask the operator to raise "
                                         "BUCKLE_MAX_UPLOAD_BYTES.", "file_too_large", "file")
                return
        await self.app(scope, receive, send)
