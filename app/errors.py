"""One error shape for every failure: `{"error": {"message", "type", "param", "code"}}`.

Services raise `APIError` (or let a `buckle` error through); the handlers below are the only
place where exceptions become HTTP responses, so a status code is decided once per error kind.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from buckle.errors import BuckleError, DatasetFormatError, UnknownNameError

# Errors that mean "the database is not reachable right now", not "this request is wrong".
DBUnavailable: tuple[type[Exception], ...] = (sa_exc.OperationalError, sa_exc.InterfaceError,
                                              sa_exc.TimeoutError)

log = logging.getLogger("buckle.api")


class APIError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.code, self.param, self.headers = code, param, headers


def not_found(kind: str, ident: str, param: str | None = None) -> APIError:
    # Another organization's id answers exactly like a missing one: no existence oracle.
    return APIError(404, f"No such {kind}: {ident!r}", code=f"{kind.replace(' ', '_')}_not_found",
                    param=param)


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def error_body(message: str, type_: str, code: str | None, param: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _response(exc: APIError) -> JSONResponse:
    return JSONResponse(error_body(exc.message, exc.type, exc.code, exc.param),
                        status_code=exc.status, headers=exc.headers)


def from_buckle(exc: BuckleError) -> APIError:
    if isinstance(exc, DatasetFormatError):
        return APIError(400, str(exc), code="invalid_file_format", param="file")
    if isinstance(exc, UnknownNameError):
        return APIError(400, str(exc), code=f"unknown_{exc.kind.replace(' ', '_')}")
    return APIError(400, str(exc), code="invalid_request")


_HTTP_TYPES = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error",
               405: "invalid_request_error", 413: "invalid_request_error",
               429: "rate_limit_error"}


# Members of a union that pydantic adds to an error's location (`n_epochs.int`,
# `n_epochs.literal['auto']`, `x.function-after[...]`, a model's class name); field names here
# are snake_case, so none of them can be mistaken for a field.
_UNION_TAG = re.compile(r"^(int|float|str|bool|none|literal\[.*\]|[a-z]+(-[a-z]+)+(\[.*\])?"
                        r"|(list|dict|set|tuple)\[.*\]|[A-Z][A-Za-z0-9]*)$")


def _loc(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc[1:] if not (isinstance(p, str) and _UNION_TAG.match(p))] \
        if loc and loc[0] in ("body", "query", "path", "header") else [str(p) for p in loc]
    return ".".join(parts) or None


def _problem(error: dict[str, Any]) -> tuple[str | None, str]:
    """(param, message) of one validation error, in words a client can act on."""
    loc, msg = tuple(error.get("loc", ())), str(error.get("msg", "invalid"))
    if error.get("type") == "json_invalid":  # loc is ("body", <character offset>)
        where = loc[1] if len(loc) > 1 else "?"
        reason = (error.get("ctx") or {}).get("error", msg)
        return None, (f"the body is not valid JSON ({reason} at character {where}); send one "
                      "JSON object with Content-Type: application/json")
    if "UploadFile" in msg:  # a multipart field without a filename arrives as a plain string
        return _loc(loc), ("expected a file part with a filename (e.g. curl -F "
                           "file=@train.jsonl); this part had no filename")
    return _loc(loc), msg


def install(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return _response(exc)

    @app.exception_handler(BuckleError)
    async def _buckle_error(_: Request, exc: BuckleError) -> JSONResponse:
        return _response(from_buckle(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        # OpenAI answers malformed requests with 400 (not FastAPI's 422); the first problem is
        # the message, with its field as `param`, and every problem is listed after it.
        problems = [_problem(e) for e in exc.errors()] or [(None, "invalid request")]
        details = "; ".join(f"{param or 'body'}: {msg}" for param, msg in problems)
        return _response(APIError(400, f"Invalid request: {details}", param=problems[0][0],
                                  code="invalid_request"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = "Unknown URL; see /docs for the routes"
        return _response(APIError(exc.status_code, message,
                                  type=_HTTP_TYPES.get(exc.status_code, "invalid_request_error"),
                                  headers=getattr(exc, "headers", None)))

    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        # The registry is down or restarting: a retryable 503, not a 500. The connection pool
        # pre-pings, so the first request after the database is back succeeds again.
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                    type(exc).__name__)
        return _response(APIError(503, "The registry database is unavailable; retry shortly.",
                                  type="server_error", code="database_unavailable",
                                  headers={"Retry-After": "5"}))

    for exc_class in DBUnavailable:
        app.add_exception_handler(exc_class, _database_down)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _response(APIError(500, "Internal server error; the request was logged.",
                                  type="server_error", code="internal_error"))
