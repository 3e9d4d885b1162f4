"""A call as Server-Sent Events: each event of the runtime's stream becomes one SSE event
named after its type, its JSON as the data; an error during the stream ends it with an
``error`` event carrying the same body an error response would."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

from aixgo.errors import AixgoError
from aixgo.message import Message
from aixgo.runtime import Runtime

from aixgo_web._errors import aixgo_error

__all__ = ["call_events", "sse"]


def sse(event: str, data: str) -> bytes:
    """One event in the ``text/event-stream`` format. ``data`` is compact JSON, which never
    holds a raw line break, so it is one ``data:`` line."""
    return f"event: {event}\ndata: {data}\n\n".encode()


async def call_events(
    rt: Runtime,
    agent: str,
    message: Message,
    *,
    user: str,
    session: str | None,
    session_event: bool = False,
) -> AsyncGenerator[tuple[str, str]]:
    """``(event name, JSON data)`` for each event of the call (:mod:`aixgo.events`); the
    last is ``reply`` (the first is ``session`` when ``session_event`` asks for it).
    Closing this iterator (the client went away) ends the turn, which stays resumable
    with the same message."""
    # Closed explicitly, so the turn ends when the response does, not whenever the garbage
    # collector gets to the generator.
    async with aclosing(
        rt.stream(agent, message, user=user, session=session, session_event=session_event)
    ) as events:
        async for event in events:
            yield event.type, event.model_dump_json()


async def encoded(
    first: list[tuple[str, str]], rest: AsyncGenerator[tuple[str, str]]
) -> AsyncIterator[bytes]:
    """The stream's bytes: the ``first`` events (taken already, so that a call refused
    before its first event was still answered with an HTTP status), then the rest; an
    aixgo error becomes an ``error`` event. However the response ends (the client went
    away), the call's iterator is closed, which ends its turn."""
    async with aclosing(rest):
        for name, data in first:
            yield sse(name, data)
        try:
            async for name, data in rest:
                yield sse(name, data)
        except AixgoError as exc:
            status, body = aixgo_error(exc)
            body["error"]["status"] = status
            yield sse("error", json.dumps(body))
