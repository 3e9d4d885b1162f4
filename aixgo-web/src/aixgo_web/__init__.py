"""aixgo over HTTP: the current user's sessions and calls to agents, as a FastAPI router to
include in an application (:func:`create_router`) or a whole application with a chat page
(:func:`create_app`, what ``aixgo web`` serves).

>>> from aixgo import Runtime
>>> import aixgo_web
>>> rt = Runtime(session_manager="memory://")
>>> app = aixgo_web.create_app(rt, authenticate=aixgo_web.header_user("X-Forwarded-User"))
>>> "/api/sessions" in app.openapi()["paths"]
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aixgo.plugins import lazy_exports

__version__ = "0.1.0"

if TYPE_CHECKING:
    from aixgo_web._errors import ERROR_STATUS
    from aixgo_web.app import create_app
    from aixgo_web.auth import bearer_user, fixed_user, header_user
    from aixgo_web.router import DEFAULT_MAX_BODY_BYTES, create_router

#: Imported on first use: loading plugins imports this package, and must not import
#: its dependencies (every process that opens any store would pay for them).
_LAZY = {
    "ERROR_STATUS": ("aixgo_web._errors", "ERROR_STATUS"),
    "create_app": ("aixgo_web.app", "create_app"),
    "bearer_user": ("aixgo_web.auth", "bearer_user"),
    "fixed_user": ("aixgo_web.auth", "fixed_user"),
    "header_user": ("aixgo_web.auth", "header_user"),
    "DEFAULT_MAX_BODY_BYTES": ("aixgo_web.router", "DEFAULT_MAX_BODY_BYTES"),
    "create_router": ("aixgo_web.router", "create_router"),
}

__all__ = [
    "create_app",
    "create_router",
    "header_user",
    "bearer_user",
    "fixed_user",
    "ERROR_STATUS",
    "DEFAULT_MAX_BODY_BYTES",
    "__version__",
]


__getattr__ = lazy_exports(__name__, _LAZY)
