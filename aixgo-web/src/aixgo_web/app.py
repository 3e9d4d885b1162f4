"""A whole web application around one runtime: the API under ``/api``, its OpenAPI schema at
``/openapi.json``, and the chat page at ``/``. ``aixgo web`` serves it; an application can
also mount it (``app.mount("/aixgo", create_app(rt, authenticate=...))``), starting the
runtime in its own lifespan, since a mounted application's lifespan does not run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib.resources import files

from aixgo.runtime import Runtime
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from aixgo_web import __version__
from aixgo_web._errors import error_response
from aixgo_web.router import DEFAULT_MAX_BODY_BYTES, Authenticate, create_router

__all__ = ["create_app"]

# The page says who may load its scripts: only this origin, no inline code, no framing.
_PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def create_app(
    runtime: Runtime,
    *,
    authenticate: Authenticate,
    cors_origins: Sequence[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    chat_page: bool = True,
    title: str = "aixgo",
) -> FastAPI:
    """The application: the lifespan starts and stops ``runtime``; ``authenticate`` is the
    dependency returning the user id (:mod:`aixgo_web.auth`); CORS is off unless
    ``cors_origins`` lists the origins allowed to call the API from a browser."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime:
            yield

    app = FastAPI(title=title, version=__version__, lifespan=lifespan)
    app.include_router(
        create_router(runtime, authenticate=authenticate, max_body_bytes=max_body_bytes),
        prefix="/api",
    )

    # What no route answers (an unknown path, a wrong method) in the same shape as the rest.
    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, http_error)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    if chat_page:
        static = files("aixgo_web") / "static"
        page = (static / "index.html").read_text(encoding="utf-8")

        @app.get("/", include_in_schema=False)
        async def index() -> Response:
            return HTMLResponse(
                page,
                headers={
                    "Content-Security-Policy": _PAGE_POLICY,
                    "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer",
                },
            )

        app.mount("/static", StaticFiles(packages=[("aixgo_web", "static")]), name="static")
    return app
