"""Who is acting: the actor every audit record names, from a context variable.

The application sets it around the work it does for someone (``with audit_actor("alice"):``);
the runtime sets it from ``user=`` when nothing set it before, the ``aixgo`` command line
from the OS user. A web or gRPC layer calls :func:`audit_actor` with the authenticated
identity around each request it serves.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from types import TracebackType

__all__ = ["acting_for", "audit_actor", "current_actor"]

_actor: ContextVar[str | None] = ContextVar("aixgo_audit_actor", default=None)


def current_actor() -> str | None:
    """The actor of the work in progress, or ``None`` when nobody set one."""
    return _actor.get()


class audit_actor:  # lowercase: used like a function, ``with audit_actor("alice"):``
    """Name the actor of everything done inside the block (``with`` or ``async with``).

    >>> before = current_actor()
    >>> with audit_actor("alice"):
    ...     current_actor()
    'alice'
    >>> current_actor() == before
    True
    """

    __slots__ = ("_name", "_only_if_unset", "_token")

    def __init__(self, name: str | None, *, only_if_unset: bool = False) -> None:
        if name is not None and (not isinstance(name, str) or not name):
            from aixgo.errors import InvalidArgument

            raise InvalidArgument(f"an audit actor is a non-empty string, not {name!r}")
        self._name = name
        self._only_if_unset = only_if_unset
        self._token: Token[str | None] | None = None

    def __enter__(self) -> None:
        if self._name is None or (self._only_if_unset and _actor.get() is not None):
            return
        self._token = _actor.set(self._name)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _actor.reset(self._token)
            self._token = None

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def acting_for(user: str | None) -> audit_actor:
    """``user`` as the actor unless one is set already: what the runtime does for a call
    with ``user=`` (an application that acts for someone else names itself first)."""
    # A call without a user (every stateless call) names nobody: one shared block that
    # does nothing, instead of a new one per call.
    return audit_actor(user, only_if_unset=True) if user is not None else _NOBODY


_NOBODY = audit_actor(None)
