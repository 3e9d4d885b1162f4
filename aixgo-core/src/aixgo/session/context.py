"""The session of the agent call in progress, for code deep inside an agent (tools, helpers)
that was not handed the session explicitly.

It is a :mod:`contextvars` variable, so concurrent calls each see their own session, and tasks
an agent starts inherit it.

>>> current_session() is None     # outside any runtime call
True
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aixgo.session.session import Session

__all__ = ["current_session", "using_session"]

_current: ContextVar[Session | None] = ContextVar("aixgo_current_session", default=None)


def current_session() -> Session | None:
    """The session of the runtime call running in this context; ``None`` outside a call and
    in stateless calls."""
    return _current.get()


class using_session:  # named like the function it replaces: ``with using_session(s):``
    """Make ``session`` current for the ``with`` block (the runtime does this per call).

    A class rather than a generator context manager: it is entered on every call."""

    __slots__ = ("_session", "_token")

    def __init__(self, session: Session | None) -> None:
        self._session = session

    def __enter__(self) -> None:
        self._token = _current.set(self._session)

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._token)
