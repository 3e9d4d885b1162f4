"""The runtime's timeout around a SessionHost (an agent whose sessions live elsewhere): its
own timer, unless the host says it enforces ``time_left`` itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aixgo import Message, Runtime
from aixgo.agent import AgentEvent, SessionHost
from aixgo.errors import AgentNotFound, CallTimeout
from aixgo.events import SessionOpened

pytestmark = pytest.mark.asyncio


class SlowHost:
    """Takes ``delay`` seconds; with ``honest``, fails once ``time_left`` has passed."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.limits: list[float | None] = []

    async def execute(self, input: Message) -> Message:
        return await self.execute_hosted(input, user=None, session=None, time_left=None)

    async def execute_hosted(
        self, input: Message, *, user: str | None, session: str | None, time_left: float | None
    ) -> Message:
        self.limits.append(time_left)
        await asyncio.sleep(self.delay)
        return Message.assistant("late")

    async def stream_hosted(
        self, input: Message, *, user: str | None, session: str | None, time_left: float | None
    ) -> AsyncIterator[AgentEvent | SessionOpened]:
        yield await self.execute_hosted(input, user=user, session=session, time_left=time_left)


class HonestHost(SlowHost):
    enforces_time_left = True

    async def execute_hosted(
        self, input: Message, *, user: str | None, session: str | None, time_left: float | None
    ) -> Message:
        self.limits.append(time_left)
        try:
            async with asyncio.timeout(time_left):
                await asyncio.sleep(self.delay)
        except TimeoutError:
            raise CallTimeout("the host's own limit", agent="h", session_id=session) from None
        return Message.assistant("in time")

    async def stream_hosted(
        self, input: Message, *, user: str | None, session: str | None, time_left: float | None
    ) -> AsyncIterator[AgentEvent | SessionOpened]:
        await asyncio.sleep(self.delay)  # no limit of its own here
        yield Message.assistant("streamed")


async def test_a_host_that_ignores_time_left_is_bounded_by_the_runtime() -> None:
    host = SlowHost(delay=30)
    assert isinstance(host, SessionHost)
    rt = Runtime(session_manager="memory://", timeout=0.05)
    rt.register("h", host)
    async with rt:
        with pytest.raises(CallTimeout, match="did not answer within 0.05 s"):
            await rt.call("h", Message.user("hi"), user="alice")
    assert host.limits == [0.05]


async def test_a_host_that_enforces_time_left_reports_its_own_timeout() -> None:
    host = HonestHost(delay=30)
    rt = Runtime(session_manager="memory://", timeout=0.05)
    rt.register("h", host)
    async with rt:
        with pytest.raises(CallTimeout, match="the host's own limit"):
            await rt.call("h", Message.user("hi"), user="alice")
        # A stream keeps the runtime's timer: the flag is about execute_hosted.
        with pytest.raises(CallTimeout, match="did not answer within 0.05 s"):
            async for _ in rt.stream("h", Message.user("hi"), user="alice"):
                pass
        host.delay = 0
        assert (await rt.call("h", Message.user("hi"), user="alice")).text == "in time"


class Echo:
    async def execute(self, input: Message) -> Message:
        return Message.assistant(input.text)


async def test_hosted_says_which_agents_keep_their_sessions_where_they_run() -> None:
    rt = Runtime(session_manager="memory://")
    rt.register("remote", SlowHost(0))
    rt.register("local", Echo())
    assert (rt.hosted("remote"), rt.hosted("local")) == (True, False)
    with pytest.raises(AgentNotFound):
        rt.hosted("nobody")
