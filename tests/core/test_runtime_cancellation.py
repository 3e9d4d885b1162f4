"""A call that timed out or was cancelled never returns a reply, on every backend, even when
a cancellation is swallowed on the way (Python 3.11's ``asyncio.wait_for`` in redis-py and
psycopg_pool, or an agent that catches it)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from aixgo import Message, Runtime
from aixgo.errors import CallTimeout
from aixgo.session import Session, SessionManager

CALLS = 100


class Slow:
    """Reads its session (so the timeout may land inside the backend), then takes 0.2 s."""

    async def execute(self, input: Message) -> Message:
        await asyncio.sleep(0.2)
        return Message.assistant("late")

    async def execute_with_session(self, input: Message, session: Session) -> Message:
        await session.get_messages(last=10)
        return await self.execute(input)


class Stubborn:
    """Catches its cancellation and answers anyway, or fails with an error of its own."""

    def __init__(self, then: str = "answer") -> None:
        self.then = then

    async def execute(self, input: Message) -> Message:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            if self.then == "raise":
                raise RuntimeError("interrupted") from None
        return Message.assistant("late")


async def _outcomes(rt: Runtime, wait: float | None) -> Counter[str]:
    async def one(i: int) -> str:
        call = rt.call("slow", Message.user("hurry"), user=f"user-{i}")
        try:
            await (call if wait is None else asyncio.wait_for(call, wait))
        except (CallTimeout, TimeoutError, asyncio.CancelledError) as exc:
            return type(exc).__name__
        return "answered"

    return Counter(await asyncio.gather(*(one(i) for i in range(CALLS))))


@pytest.mark.asyncio
async def test_timed_out_calls_never_answer(store_url: str) -> None:
    async with Runtime(session_manager=store_url, timeout=0.05) as rt:
        rt.register("slow", Slow())
        assert await _outcomes(rt, None) == {"CallTimeout": CALLS}


@pytest.mark.asyncio
async def test_calls_the_caller_gave_up_on_never_answer(store_url: str) -> None:
    async with Runtime(session_manager=store_url, timeout=None) as rt:
        rt.register("slow", Slow())
        assert await _outcomes(rt, 0.05) == {"TimeoutError": CALLS}


@pytest.mark.asyncio
@pytest.mark.parametrize("then", ["answer", "raise"])
async def test_an_agent_that_catches_its_timeout_still_times_out(then: str) -> None:
    async with (
        SessionManager("memory://") as mgr,
        Runtime(session_manager=mgr, timeout=0.05) as rt,
    ):
        rt.register("stubborn", Stubborn(then))
        with pytest.raises(CallTimeout):
            await rt.call("stubborn", Message.user("hurry"), user="alice")
        s = await mgr.get_or_create("stubborn", "alice")
        assert [m.text for m in await s.get_messages()] == ["hurry"]  # no reply stored


@pytest.mark.asyncio
async def test_a_call_the_caller_cancelled_never_answers_even_if_the_agent_swallows_it() -> None:
    async with Runtime(session_manager="memory://", timeout=None) as rt:
        rt.register("stubborn", Stubborn())
        call = asyncio.create_task(rt.call("stubborn", Message.user("hurry"), user="alice"))
        await asyncio.sleep(0.05)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
