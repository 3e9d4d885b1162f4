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
from fastapi import Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["ERROR_STATUS", "AixgoRoute", "error_body", "error_response", "status_of"]

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
_SERVER_SIDE = "the server could not complete the request; its log has the details"


def status_of(exc: AixgoError) -> int:
    """The HTTP status of an aixgo error."""
    return next(status for cls, status in ERROR_STATUS if isinstance(exc, cls))


def error_body(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of every error response (and of the ``error`` stream event)."""
    return {"error": {"type": kind, "message": message, **extra}}


def error_response(exc: Exception) -> JSONResponse:
    """The response for an aixgo error, a request validation error or an HTTP error."""
    if isinstance(exc, AixgoError):
        status = status_of(exc)
        kind = type(exc).__name__
        if status >= 500:
            _log.warning("%s (%d): %s", kind, status, exc)
            return JSONResponse(error_body(kind, _SERVER_SIDE), status_code=status)
        return JSONResponse(error_body(kind, str(exc)), status_code=status)
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
    if isinstance(exc, StarletteHTTPException):
        try:
            kind = HTTPStatus(exc.status_code).phrase.replace(" ", "").replace("-", "")
        except ValueError:
            kind = "HTTPError"
        return JSONResponse(
            error_body(kind, str(exc.detail)),
            status_code=exc.status_code,
            headers=dict(exc.headers or {}),
        )
    raise TypeError(f"no error response for {type(exc).__name__}")


class AixgoRoute(APIRoute):
    """A route that answers its errors in aixgo's shape: aixgo errors by :data:`ERROR_STATUS`,
    invalid requests with 422, HTTP errors (the app's authentication, a body over the size
    limit) with their own status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            # Starlette's HTTPException: FastAPI's, and the body size limit's.
            except (AixgoError, RequestValidationError, StarletteHTTPException) as exc:
                return error_response(exc)

        return handle
