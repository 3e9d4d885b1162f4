"""How aixgo's errors, FastAPI's validation errors and HTTP errors become responses: one body
shape, ``{"error": {"type": ..., "message": ...}}``, on every route, however the router is
mounted (the mapping lives in the routes themselves, since an included router brings no
exception handlers of its own into the app)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any

from aixgo.errors import (
    AgentError,
    AixgoError,
    BackendClosed,
    BackendTimeout,
    BackendUnavailable,
    CallTimeout,
    ConflictError,
    NotFoundError,
    NotStarted,
    UsageError,
)
from fastapi import HTTPException, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message

__all__ = [
    "ERROR_STATUS",
    "AixgoRoute",
    "aixgo_error",
    "error_body",
    "error_response",
    "route_class",
    "status_of",
]

#: aixgo error class -> HTTP status; the first class an error is an instance of wins.
ERROR_STATUS: tuple[tuple[type[AixgoError], int], ...] = (
    (NotStarted, 503),  # a UsageError of the app, not of the request: the service is not ready
    (UsageError, 422),
    (NotFoundError, 404),
    (ConflictError, 409),
    (CallTimeout, 504),
    (BackendTimeout, 504),
    (BackendUnavailable, 503),
    (BackendClosed, 503),
    (AgentError, 502),
    (AixgoError, 500),
)

# Server-side failures say only their type to the client: their messages name stores,
# hosts and agents' internals. The full message goes to this log.
_log = logging.getLogger("aixgo.web")
# HTTP errors by the RFC 9110 names (Python 3.11 still says "Request Entity Too Large").
_HTTP_KINDS = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
               413: "ContentTooLarge"}  # fmt: skip
_SERVER_SIDE = "the server could not complete the request; its log has the details"


def status_of(exc: AixgoError) -> int:
    """The HTTP status of an aixgo error."""
    return next(status for cls, status in ERROR_STATUS if isinstance(exc, cls))


def error_body(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of every error response (and of the ``error`` stream event)."""
    return {"error": {"type": kind, "message": message, **extra}}


def aixgo_error(exc: AixgoError, **extra: Any) -> tuple[int, dict[str, Any]]:
    """The status and body for an aixgo error; a server-side one is logged and its
    message withheld."""
    status = status_of(exc)
    kind = type(exc).__name__
    if status >= 500:
        _log.warning("%s (%d): %s", kind, status, exc)
        return status, error_body(kind, _SERVER_SIDE, **extra)
    # ``problem``, where an error has one, is its message without the hint for Python
    # callers ("create it with SessionManager.create()"), which means nothing to an HTTP client.
    message = getattr(exc, "problem", None) or str(exc)
    return status, error_body(kind, message, **extra)


def error_response(exc: Exception) -> JSONResponse:
    """The response for an aixgo error, a request validation error or an HTTP error."""
    if isinstance(exc, AixgoError):
        status, body = aixgo_error(exc)
        return JSONResponse(body, status_code=status)
    if isinstance(exc, RequestValidationError):
        details = jsonable_encoder(
            [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        )
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return JSONResponse(
            error_body("InvalidArgument", f"{where}: {first['msg']}", details=details),
            status_code=422,
        )
    if isinstance(exc, StarletteHTTPException) and isinstance(exc.__cause__, ValueError):
        # FastAPI's 400 for a body it cannot decode (not UTF-8): as invalid as bad JSON.
        return JSONResponse(
            error_body("InvalidArgument", "body: the request body is not valid JSON (UTF-8)"),
            status_code=422,
        )
    if isinstance(exc, StarletteHTTPException):
        kind = _HTTP_KINDS.get(exc.status_code) or _phrase(exc.status_code)
        return JSONResponse(
            error_body(kind, str(exc.detail)),
            status_code=exc.status_code,
            headers=dict(exc.headers or {}),
        )
    raise TypeError(f"no error response for {type(exc).__name__}")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return "HTTPError"


class AixgoRoute(APIRoute):
    """A route that answers its errors in aixgo's shape: aixgo errors by :data:`ERROR_STATUS`,
    invalid requests with 422, HTTP errors (the app's authentication, a body over
    ``max_body_bytes``) with their own status."""

    #: Request bodies over this many bytes are refused with 413 (see :func:`route_class`).
    max_body_bytes: int | None = None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        limit = self.max_body_bytes

        async def handle(request: Request) -> Response:
            try:
                if limit is not None:
                    request = _limited(request, limit)
                return await handler(request)
            # Starlette's HTTPException: FastAPI's, and the body size limit's.
            except (AixgoError, RequestValidationError, StarletteHTTPException) as exc:
                return error_response(exc)

        return handle


def route_class(max_body_bytes: int) -> type[AixgoRoute]:
    """An :class:`AixgoRoute` refusing bodies over ``max_body_bytes``."""
    return type("AixgoRoute", (AixgoRoute,), {"max_body_bytes": max_body_bytes})


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"the request body is over the limit of {limit:,} bytes")


def _limited(request: Request, limit: int) -> Request:
    """``request`` with its body refused (413) once it is over ``limit`` bytes: at once by
    its Content-Length, else as soon as what arrived is over, never read whole.
    (Starlette's own limiter answers in plain text, not in aixgo's error shape.)"""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise _too_large(limit)
    source = request.receive
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await source()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _too_large(limit)
        return message

    return Request(request.scope, receive)
