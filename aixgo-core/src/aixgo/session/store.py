"""SessionStore: the backend a manager and its sessions work on, and whether it is still open.

A :class:`~aixgo.session.SessionManager` makes one and hands it to every
:class:`~aixgo.session.Session` it returns, so a session reads and writes through the store
without reaching back into its manager. A *view* sees the same store through a wrapper of its
backend (tracing, for one) and opens and closes together with it.

>>> import asyncio
>>> from aixgo.session.memory import MemoryBackend
>>> store = SessionStore(MemoryBackend())
>>> view = store.view(store.backend)
>>> asyncio.run(view.close())
>>> store.closed
True
"""

from __future__ import annotations

from aixgo.errors import BackendClosed
from aixgo.session.backend import Backend

__all__ = ["SessionStore"]


class _State:
    """What a store and its views share."""

    __slots__ = ("closed",)

    def __init__(self) -> None:
        self.closed = False


class SessionStore:
    """A backend with an open/closed state: closed once, every operation through it (or
    through a view of it) raises :class:`~aixgo.errors.BackendClosed`."""

    __slots__ = ("_state", "backend")

    def __init__(self, backend: Backend) -> None:
        self.backend: Backend = backend
        self._state = _State()

    def __repr__(self) -> str:
        return f"SessionStore({self.backend!r}, closed={self.closed})"

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran on this store or on any view of it."""
        return self._state.closed

    def check_open(self) -> None:
        """Raise :class:`~aixgo.errors.BackendClosed` once the store is closed."""
        if self._state.closed:
            raise BackendClosed("session manager", "create a new SessionManager")

    def view(self, backend: Backend) -> SessionStore:
        """This store seen through ``backend``, which must wrap this store's backend (a
        traced one, say): the two share their open/closed state."""
        other = SessionStore(backend)
        other._state = self._state
        return other

    async def open(self) -> None:
        """Connect the backend now, so an unreachable store fails here."""
        self.check_open()
        await self.backend.open()

    async def close(self) -> None:
        """Close the backend, once for the store and all its views."""
        if not self._state.closed:
            self._state.closed = True
            await self.backend.close()
