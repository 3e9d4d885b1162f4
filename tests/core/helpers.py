"""What the runtime and stream tests share: a backend without the optional turn capabilities,
and collecting a stream's events."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aixgo.events import Event
from aixgo.session.memory import MemoryBackend


class NoLeases(MemoryBackend):
    """memory:// as a third-party backend without the optional capabilities would be: the
    runtime falls back to the optimistic turn protocol, the manager to its convergence."""

    acquire_turn = renew_turn = release_turn = None  # type: ignore[assignment]
    get_or_create_session = None  # type: ignore[assignment]


async def collect(stream: AsyncIterator[Event], into: list[Event] | None = None) -> list[Event]:
    """The events of ``stream``; also appended to ``into`` as they come (seen before an error)."""
    seen = [] if into is None else into
    async for ev in stream:
        seen.append(ev)
    return seen
