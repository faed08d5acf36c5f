"""Serving a stored artifact: the file itself (local store), a 307 to a presigned URL, or a
stream from the object store through the API (`BUCKLE_DOWNLOAD_PRESIGN_S` chooses)."""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from app.errors import not_found
from app.storage import ArtifactStore, iter_stream

log = logging.getLogger("buckle.api")


def content_disposition(filename: str) -> str:
    """`attachment` with the name quoted so a customer's filename cannot break the header."""
    if filename.isascii() and filename.isprintable() and not set('"\\;') & set(filename):
        return f'attachment; filename="{filename}"'
    return f"attachment; filename*=utf-8''{quote(filename, safe='')}"


def artifact_response(store: ArtifactStore, key: str, *, filename: str, media_type: str,
                      sha256: str, what: str, ident: str) -> Response:
    """The artifact under `key`, or a 404 naming `what` when its bytes are gone."""
    if not store.exists(key):
        log.error("%s %s: stored content %s is missing", what, ident, key)
        raise not_found(what, ident)
    headers = {"X-Buckle-Sha256": sha256, "ETag": f'"{sha256}"'}
    if store.local:
        return FileResponse(store.local_file(key), media_type=media_type, filename=filename,
                            headers=headers)
    url = store.download_url(key, content_disposition(filename), media_type)
    if url:
        return RedirectResponse(url, status_code=307, headers=headers)
    headers.update({"Content-Length": str(store.size(key)),
                    "Content-Disposition": content_disposition(filename)})
    return StreamingResponse(iter_stream(store.open(key)), media_type=media_type,
                             headers=headers)
