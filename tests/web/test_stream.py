"""The stream's end: a client that goes away (the response body closed part-way, as Starlette
closes it on a disconnect) ends the turn at once, and the turn stays resumable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aixgo import Message
from aixgo.events import Delta
from aixgo.session import Session
from aixgo_web import _stream

from .conftest import runtime

pytestmark = pytest.mark.asyncio


class Dribble:
    """Streams its reply a letter at a time, slowly."""

    def __init__(self) -> None:
        self.runs = 0

    async def execute(self, input: Message) -> Message:
        raise AssertionError("a streaming agent is always iterated")

    async def stream_with_session(
        self, input: Message, session: Session | None
    ) -> AsyncIterator[Delta | Message]:
        self.runs += 1
        for ch in input.text.upper():
            await asyncio.sleep(0.05)
            yield Delta(text=ch)
        yield Message.assistant(input.text.upper())


@pytest.mark.parametrize("after", [1, 3])
async def test_closing_the_response_ends_the_turn(after: int) -> None:
    rt = runtime(turn_policy="reject")
    agent = Dribble()
    rt.register("dribble", agent)
    async with rt:
        s = await rt.session_manager.create("dribble", user_id="alice")
        message = Message.user("abcdefgh", id="m1")
        events = _stream.call_events(rt, "dribble", message, user="alice", session=s.id)
        first = await anext(events)
        body = _stream.encoded([("session", "{}"), first], events)
        for _ in range(after):  # the client reads a little, then goes away
            await anext(body)
        await body.aclose()
        # The turn is over at once: under "reject" a running turn would refuse this call.
        out = await rt.call("dribble", message, user="alice", session=s.id)
        assert out.text == "ABCDEFGH"
        assert agent.runs == 2
        # The input was stored once; the resumed turn answered it.
        assert [m.text for m in await s.get_messages()] == ["abcdefgh", "ABCDEFGH"]
