"""``rt.stream(..., session_event=True)``: a turn in a session first names it, once, so a
caller who gave only a user learns which session to continue; without asking, or without a
session, no such event."""

from __future__ import annotations

import pytest
from aixgo import Message, Runtime
from aixgo.events import Delta, Reply, SessionOpened, parse_event
from aixgo.session import Session


class _Talker:
    """Streams two words, then replies."""

    async def execute(self, input: Message) -> Message:
        return Message.assistant("a b")

    async def stream_with_session(self, input: Message, session: Session | None):  # type: ignore[no-untyped-def]
        yield Delta(text="a ")
        yield Delta(text="b")
        yield Message.assistant("a b")


@pytest.fixture
def rt() -> Runtime:
    rt = Runtime(session_manager="memory://")
    rt.register("talker", _Talker())
    rt.register("stateless", _Talker(), session_mode="disabled")
    return rt


@pytest.mark.asyncio
async def test_the_first_event_names_the_users_session_once(rt: Runtime) -> None:
    async with rt:
        message = Message.user("hi")
        events = [e async for e in rt.stream("talker", message, user="alice",
                                             session_event=True)]  # fmt: skip
        s = await rt.session_manager.get_or_create("talker", "alice")
        # The same message again is answered from the store: still named first.
        again = [e async for e in rt.stream("talker", message, user="alice",
                                            session_event=True)]  # fmt: skip
        continued = [e async for e in rt.stream("talker", Message.user("more"),
                                                session=s.id, session_event=True)]  # fmt: skip
        history = await s.get_messages()
    assert events[0] == SessionOpened(session_id=s.id)
    assert [e.type for e in events] == ["session", "delta", "delta", "reply"]
    assert [e.type for e in again] == ["session", "reply"]
    assert again[0] == events[0] and again[-1] == events[-1]
    assert continued[0] == events[0]
    assert len(history) == 4


@pytest.mark.asyncio
async def test_no_session_event_unless_asked_or_without_a_session(rt: Runtime) -> None:
    async with rt:
        plain = [e async for e in rt.stream("talker", Message.user("hi"), user="bob")]
        stateless = [e async for e in rt.stream("talker", Message.user("hi"),
                                                session_event=True)]  # fmt: skip
        disabled = [e async for e in rt.stream("stateless", Message.user("hi"), user="bob",
                                               session_event=True)]  # fmt: skip
        reply = await rt.call("talker", Message.user("again"), user="bob")
    for events in (plain, stateless, disabled):
        assert [e.type for e in events] == ["delta", "delta", "reply"]
    assert isinstance(plain[-1], Reply) and reply.seq == 4


def test_the_event_serialises_and_parses_back() -> None:
    event = SessionOpened(session_id="s" * 32)
    assert event.model_dump_json() == '{"type":"session","session_id":"' + "s" * 32 + '"}'
    assert parse_event(event.model_dump_json()) == event
