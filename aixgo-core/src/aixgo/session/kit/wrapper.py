"""BackendWrapper: the base of a backend that wraps another (tracing, encryption, audit).

A wrapper answers for the store it wraps: it carries its ``capabilities``, and optional
methods it does not define itself (``SessionPerUser.get_or_create_session``, the
``TurnLeases`` methods, ``Migratable.migrate``, a plugin's own extras) pass through, so
``isinstance(wrapper, TurnLeases)`` is true exactly when it is for the wrapped backend. A
subclass that must intercept one of them overrides :meth:`optional`. The one exception is
``ReadThrough.get_messages_through``, a read the wrapper's own ``get_messages`` would be
skipped by: it never passes through (a wrapper that wants it defines it).

>>> from aixgo.session import Migratable, open_backend
>>> class Quiet(BackendWrapper):
...     pass
>>> w = Quiet(open_backend("memory://"))
>>> isinstance(w, Migratable), w.capabilities == w.inner.capabilities
(False, True)
"""

from __future__ import annotations

from typing import Any

from aixgo.session.backend import Backend, Capability

__all__ = ["BackendWrapper"]

# Optional methods that would go around the wrapper's own required methods.
_NEVER_THROUGH = frozenset({"get_messages_through"})


class BackendWrapper:
    """Holds ``inner`` and its capabilities, forwards :meth:`open`/:meth:`close`, and passes
    optional methods through (see the module docs). Subclasses define the protocol's
    required methods."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.capabilities: frozenset[Capability] = inner.capabilities

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the wrapper does not have itself; private names and
        # ``inner`` (looked up before __init__ set it, by copy or pickle) never pass through.
        if name.startswith("_") or name == "inner" or name in _NEVER_THROUGH:
            raise AttributeError(name)
        return self.optional(name, getattr(self.inner, name))

    def optional(self, name: str, method: Any) -> Any:
        """The wrapper's version of the wrapped backend's optional ``method``: itself, unless
        a subclass intercepts it."""
        return method

    async def open(self) -> None:
        """Open the wrapped backend."""
        await self.inner.open()

    async def close(self) -> None:
        """Close the wrapped backend."""
        await self.inner.close()
