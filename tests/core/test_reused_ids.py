"""A message id names one message: reusing a stored id for other content is refused, in the
runtime as in the session API, and the agent never answers the wrong message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aixgo import Message, Runtime
from aixgo.errors import ConflictError, MessageIdConflict
from aixgo.runtime import REPLY_TO


class Echo:
    def __init__(self) -> None:
        self.inputs: list[str] = []

    async def execute(self, input: Message) -> Message:
        self.inputs.append(input.text)
        return Message.assistant("you said: " + input.text)


@pytest_asyncio.fixture(params=["memory", "file"])
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    url = "memory://" if request.param == "memory" else f"file://{tmp_path}/store"
    async with Runtime(session_manager=url, timeout=5.0) as rt:
        yield rt


@pytest.mark.asyncio
@pytest.mark.parametrize("reused", ["reply", "input"])
async def test_a_call_reusing_a_stored_id_for_new_text_is_a_conflict(
    runtime: Runtime, reused: str
) -> None:
    echo = Echo()
    runtime.register("echo", echo)
    first_input = Message.user("hi")
    reply = await runtime.call("echo", first_input, user="alice")
    taken = reply.id if reused == "reply" else first_input.id
    with pytest.raises(ConflictError, match="different role or content") as caught:
        await runtime.call("echo", Message.user("NEW", id=taken), user="alice")
    # Not a lost race (which a caller would retry): the error says the id is taken.
    assert isinstance(caught.value, MessageIdConflict)
    assert caught.value.expected_seq is None
    assert echo.inputs == ["hi"]
    s = await runtime.session_manager.get_or_create("echo", "alice")
    history = await s.get_messages()
    assert [m.text for m in history] == ["hi", "you said: hi"]
    assert history[1].metadata[REPLY_TO] == first_input.id


@pytest.mark.asyncio
async def test_a_retry_of_the_same_input_still_returns_the_stored_reply(
    runtime: Runtime,
) -> None:
    echo = Echo()
    runtime.register("echo", echo)
    msg = Message.user("hi")
    reply = await runtime.call("echo", msg, user="alice")
    # Rebuilt for the retry (new created_at and metadata): still the same message.
    again = Message.user("hi", id=msg.id, metadata={"attempt": 2})
    assert await runtime.call("echo", again, user="alice") == reply
    assert echo.inputs == ["hi"]
