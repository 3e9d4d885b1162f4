"""A call as Server-Sent Events: each event of the runtime's stream becomes one SSE event
named after its type, its JSON as the data; an error during the stream ends it with an
``error`` event carrying the same body an error response would."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from aixgo.errors import AixgoError
from aixgo.message import Message
from aixgo.runtime import Runtime

from aixgo_web._errors import error_body, status_of

__all__ = ["call_events", "sse"]


def sse(event: str, data: str) -> bytes:
    """One event in the ``text/event-stream`` format. ``data`` is compact JSON, which never
    holds a raw line break, so it is one ``data:`` line."""
    return f"event: {event}\ndata: {data}\n\n".encode()


async def call_events(
    rt: Runtime, agent: str, message: Message, *, user: str, session: str | None
) -> AsyncIterator[tuple[str, str]]:
    """``(event name, JSON data)`` for each event of the call; the last is ``reply``."""
    out = await rt.call(agent, message, user=user, session=session)
    yield "reply", json.dumps({"type": "reply", "message": out.model_dump(mode="json")})


async def encoded(
    first: list[tuple[str, str]], rest: AsyncIterator[tuple[str, str]]
) -> AsyncIterator[bytes]:
    """The stream's bytes: the ``first`` events (taken already, so that a call refused
    before its first event was still answered with an HTTP status), then the rest; an
    aixgo error becomes an ``error`` event."""
    for name, data in first:
        yield sse(name, data)
    try:
        async for name, data in rest:
            yield sse(name, data)
    except AixgoError as exc:
        status = status_of(exc)
        message = str(exc) if status < 500 else "the call failed; the server's log has details"
        body = error_body(type(exc).__name__, message, status=status)
        yield sse("error", json.dumps(body))
