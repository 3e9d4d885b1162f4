"""Ready-made ``authenticate`` dependencies. Authentication is the application's: any FastAPI
dependency returning the user id will do; these cover two common deployments.

>>> from aixgo_web.auth import header_user, bearer_user, fixed_user
>>> behind_proxy = header_user("X-Forwarded-User")   # set by a trusted reverse proxy
>>> tokens = {"s3cret-token": "alice"}
>>> with_tokens = bearer_user(tokens.get)            # a token the app checks -> its user
"""

# No `from __future__ import annotations`: FastAPI reads the dependency's annotations, which
# name a local object.
import inspect
import re
from collections.abc import Awaitable, Callable
from typing import Annotated

from aixgo.errors import InvalidArgument, InvalidIdentifier
from aixgo.identifiers import validate_name
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

__all__ = ["bearer_user", "fixed_user", "header_user"]

_MAX_NAME = 128
# An HTTP field name is a token (RFC 9110, section 5.1).
_TOKEN = re.compile(rf"[!#$%&'*+\-.^_`|~0-9A-Za-z]{{1,{_MAX_NAME}}}")

UserOf = Callable[[str], str | None] | Callable[[str], Awaitable[str | None]]


def _checked(user: str | None, challenge: str) -> str:
    if not user:
        raise HTTPException(401, "not authenticated", headers={"WWW-Authenticate": challenge})
    try:
        validate_name(user, "user id")
    except InvalidIdentifier:
        # The credential was good but names no usable user: the deployment's fault, and
        # not the client's to see.
        raise HTTPException(
            401, "not authenticated", headers={"WWW-Authenticate": challenge}
        ) from None
    return user


def header_user(name: str = "X-Forwarded-User") -> Callable[[Request], str]:
    """The user named by the request header ``name``, which a trusted reverse proxy sets
    after authenticating the user (and strips from what clients send). 401 without it, with
    it twice (a proxy that appends rather than replaces would let the client's copy
    through), or with a value that is not a user id in UTF-8 (control characters, over 256
    characters). :class:`InvalidArgument` for a ``name`` that is not an HTTP header name.
    Use it only behind such a proxy: anyone reaching the app directly can set the header."""
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise InvalidArgument(
            f"{name!r} is not an HTTP header name: 1-{_MAX_NAME} letters, digits and "
            "!#$%&'*+-.^_`|~, such as X-Forwarded-User"
        )

    def user_from_header(request: Request) -> str:
        values = request.headers.getlist(name)
        if len(values) != 1:
            return _checked(None, "Header")
        try:
            # Starlette decodes header bytes as Latin-1; a proxy sends user names in UTF-8.
            user = values[0].encode("latin-1").decode("utf-8")
        except UnicodeError:
            return _checked(None, "Header")
        return _checked(user, "Header")

    return user_from_header


def bearer_user(user_of: UserOf) -> Callable[..., Awaitable[str]]:
    """The user whose token comes in ``Authorization: Bearer TOKEN``: ``user_of(token)``
    (sync or async) returns the user id, or ``None`` for a token it does not accept (401)."""
    scheme = HTTPBearer(auto_error=False)

    async def user_from_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(scheme)],
    ) -> str:
        if credentials is None:
            return _checked(None, "Bearer")
        user = user_of(credentials.credentials)
        if inspect.isawaitable(user):
            user = await user
        return _checked(user, "Bearer")

    return user_from_token


def fixed_user(user: str) -> Callable[[], str]:
    """Every request is ``user``: for a single-user app on a loopback address (what
    ``aixgo web --user NAME`` serves), never for one reachable by others."""
    validate_name(user, "user id")

    def the_user() -> str:
        return user

    return the_user
