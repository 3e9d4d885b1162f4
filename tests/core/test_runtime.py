"""Runtime: agents, lifecycle, and exactly what a call persists."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aixgo import Message, Runtime, ToolCall
from aixgo.agent import Agent, SessionAwareAgent
from aixgo.errors import (
    AgentError,
    AgentNotFound,
    CallTimeout,
    ConflictError,
    InvalidArgument,
    InvalidIdentifier,
    InvalidMessage,
    NotStarted,
    SessionNotFound,
)
from aixgo.identifiers import is_id, new_id
from aixgo.runtime import REPLY_TO
from aixgo.session import Session, SessionManager, TurnLeases, current_session
from aixgo.session.memory import MemoryBackend

from tests.core.helpers import NoLeases


class Echo:
    def __init__(self) -> None:
        self.inputs: list[Message] = []
        self.sessions: list[Session | None] = []

    async def execute(self, input: Message) -> Message:
        self.inputs.append(input)
        self.sessions.append(current_session())
        return Message.assistant("echo: " + input.text)


class Memoryful:
    """Session-aware: answers with what it has seen so far."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    async def execute(self, input: Message) -> Message:
        return Message.assistant("stateless")

    async def execute_with_session(self, input: Message, session: Session) -> Message:
        assert current_session() is session
        history = [m.text for m in await session.get_messages()]
        self.seen.append(history)
        return Message.assistant(f"{len(history)} messages")


class Failing:
    def __init__(self, fail_times: int = 1) -> None:
        self.left = fail_times
        self.runs = 0

    async def execute(self, input: Message) -> Message:
        self.runs += 1
        if self.left:
            self.left -= 1
            raise RuntimeError("model unavailable")
        return Message.assistant("recovered")


class Slow:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def execute(self, input: Message) -> Message:
        await asyncio.sleep(self.seconds)
        return Message.assistant("late")


@pytest_asyncio.fixture
async def mgr() -> AsyncIterator[SessionManager]:
    async with SessionManager("memory://") as m:
        yield m


@pytest_asyncio.fixture(params=["leases", "optimistic"])
async def both(request: pytest.FixtureRequest) -> AsyncIterator[SessionManager]:
    """A memory:// manager with turn leases, and one without (the optimistic protocol)."""
    backend = MemoryBackend() if request.param == "leases" else NoLeases()
    async with SessionManager(backend) as m:
        yield m


def leased(mgr: SessionManager) -> bool:
    return isinstance(mgr.backend, TurnLeases)


async def texts(mgr: SessionManager, session_id: str) -> list[str]:
    return [m.text for m in await (await mgr.get(session_id)).get_messages()]


async def only_session(mgr: SessionManager) -> Session:
    page = await mgr.list()
    assert len(page.items) == 1
    return await mgr.get(page.items[0].id)


# -- agents and lifecycle ------------------------------------------------------------------


def test_protocols() -> None:
    assert isinstance(Echo(), Agent)
    assert not isinstance(Echo(), SessionAwareAgent)
    assert isinstance(Memoryful(), SessionAwareAgent)
    assert not isinstance(object(), Agent)


@pytest.mark.asyncio
async def test_register_get_list_unregister(mgr: SessionManager) -> None:
    rt = Runtime(session_manager=mgr)
    echo = Echo()
    rt.register("echo", echo)
    rt.register("stateless", Echo(), session_mode="disabled")
    assert rt.get("echo") is echo
    assert rt.list() == ["echo", "stateless"]
    assert rt.session_mode("stateless") == "disabled"
    with pytest.raises(InvalidArgument, match="already registered"):
        rt.register("echo", Echo())
    with pytest.raises(InvalidArgument, match="no 'async def execute"):
        rt.register("bad", object())
    with pytest.raises(InvalidArgument, match="'enabled' or 'disabled'"):
        rt.register("bad", Echo(), session_mode="off")  # type: ignore[arg-type]
    with pytest.raises(InvalidIdentifier):
        rt.register("", Echo())
    assert await rt.unregister("echo") is echo
    with pytest.raises(AgentNotFound, match="registered agents: stateless"):
        rt.get("echo")
    with pytest.raises(AgentNotFound):
        await rt.unregister("echo")


class Tracked:
    def __init__(self, log: list[str], name: str, fail_start: bool = False) -> None:
        self.log, self.name, self.fail_start = log, name, fail_start

    async def start(self) -> None:
        if self.fail_start:
            raise RuntimeError(f"{self.name} cannot start")
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")

    async def execute(self, input: Message) -> Message:
        self.log.append(f"run {self.name}")
        return Message.assistant("ok")


@pytest.mark.asyncio
async def test_agents_start_and_stop_with_the_runtime(mgr: SessionManager) -> None:
    log: list[str] = []
    rt = Runtime(session_manager=mgr)
    rt.register("a", Tracked(log, "a"))
    rt.register("b", Tracked(log, "b"))
    async with rt:
        assert log == ["start a", "start b"]
        rt.register("late", Tracked(log, "late"))
        await rt.call("late", Message.user("x"))
        await rt.call("late", Message.user("y"))
        assert log[2:] == ["start late", "run late", "run late"]
        await rt.unregister("a")
        assert log[-1] == "stop a"
    assert log[-2:] == ["stop late", "stop b"]
    # start()/stop() work as well as `async with`, and are idempotent.
    log.clear()
    await rt.start()
    await rt.start()
    await rt.stop()
    await rt.stop()
    assert log == ["start b", "start late", "stop late", "stop b"]


@pytest.mark.asyncio
async def test_a_failing_start_stops_what_was_started(mgr: SessionManager) -> None:
    log: list[str] = []
    rt = Runtime(session_manager=mgr)
    rt.register("a", Tracked(log, "a"))
    rt.register("b", Tracked(log, "b", fail_start=True))
    with pytest.raises(RuntimeError, match="b cannot start"):
        await rt.start()
    assert log == ["start a", "stop a"]
    with pytest.raises(NotStarted):
        await rt.call("a", Message.user("x"))


@pytest.mark.asyncio
async def test_calls_before_start_or_to_unknown_agents_are_refused_and_write_nothing(
    mgr: SessionManager,
) -> None:
    rt = Runtime(session_manager=mgr)
    rt.register("echo", Echo())
    with pytest.raises(NotStarted, match="async with runtime"):
        await rt.call("echo", Message.user("x"), user="alice")
    with pytest.raises(NotStarted):
        _ = rt.session_manager
    async with rt:
        s = await mgr.create("echo", user_id="alice")
        with pytest.raises(AgentNotFound, match="registered agents: echo"):
            await rt.call_with_session("nobody", Message.user("orphan?"), s.id)
        with pytest.raises(InvalidMessage):
            await rt.call("echo", "just text", user="alice")  # type: ignore[arg-type]
        with pytest.raises(InvalidIdentifier):
            await rt.call("echo", Message.user("x"), session="../../etc/passwd")
        with pytest.raises(InvalidIdentifier):
            await rt.call("echo", Message.user("x"), user="")
        assert await s.get_messages() == []
        assert len((await mgr.list()).items) == 1
    with pytest.raises(NotStarted):
        await rt.call("echo", Message.user("after stop"), user="alice")


@pytest.mark.asyncio
async def test_runtime_closes_only_the_manager_it_opened(mgr: SessionManager) -> None:
    async with Runtime(session_manager=mgr) as rt:
        assert rt.session_manager is mgr
    await mgr.list()  # still open: it is the caller's
    rt = Runtime(session_manager="memory://")
    async with rt:
        own = rt.session_manager
    with pytest.raises(Exception, match="closed"):
        await own.list()


def test_default_store_is_aixgo_session_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIXGO_SESSION_URL", "memory://")

    async def run() -> Any:
        async with Runtime() as rt:
            return rt.session_manager.backend

    backend = asyncio.run(run())
    assert isinstance(getattr(backend, "inner", backend), MemoryBackend)


# -- sessions by default, stateless by choice ----------------------------------------------


@pytest.mark.asyncio
async def test_with_a_user_the_latest_session_is_resumed_or_created(mgr: SessionManager) -> None:
    agent = Memoryful()
    async with Runtime(session_manager=mgr) as rt:
        rt.register("assistant", agent)
        out = await rt.call("assistant", Message.user("Hello, I am Alice"), user="alice")
        assert out.text == "1 messages" and out.seq == 2
        out = await rt.call("assistant", Message.user("What is my name?"), user="alice")
        assert out.text == "3 messages" and out.seq == 4
        await rt.call("assistant", Message.user("I am Bob"), user="bob")
    assert agent.seen[1] == ["Hello, I am Alice", "1 messages", "What is my name?"]
    alice = (await mgr.list(user_id="alice")).items
    assert len(alice) == 1 and alice[0].message_count == 4
    assert len((await mgr.list(user_id="bob")).items) == 1
    history = await (await mgr.get(alice[0].id)).get_messages()
    assert [m.role for m in history] == ["user", "assistant", "user", "assistant"]
    assert history[1].metadata[REPLY_TO] == history[0].id


@pytest.mark.asyncio
async def test_with_a_session_id_that_session_is_used_and_ownership_checked(
    mgr: SessionManager,
) -> None:
    async with Runtime(session_manager=mgr) as rt:
        rt.register("echo", Echo())
        rt.register("other", Echo())
        s = await mgr.create("echo", user_id="alice")
        s2 = await mgr.create("echo", user_id="alice")
        await rt.call_with_session("echo", Message.user("one"), s.id)
        await rt.call("echo", Message.user("two"), session=s.id, user="alice")
        assert await texts(mgr, s.id) == ["one", "echo: one", "two", "echo: two"]
        assert await texts(mgr, s2.id) == []
        with pytest.raises(SessionNotFound):
            await rt.call("echo", Message.user("steal"), session=s.id, user="mallory")
        with pytest.raises(SessionNotFound):
            await rt.call_with_session("echo", Message.user("x"), new_id())
        with pytest.raises(InvalidArgument, match="belongs to agent 'echo'"):
            await rt.call_with_session("other", Message.user("x"), s.id)
        assert len(await texts(mgr, s.id)) == 4


@pytest.mark.asyncio
async def test_without_user_or_session_nothing_is_touched(mgr: SessionManager) -> None:
    echo = Echo()
    async with Runtime(session_manager=mgr) as rt:
        rt.register("echo", echo)
        out = await rt.call("echo", Message.user("hi"))
    assert out.text == "echo: hi" and out.seq is None
    assert echo.sessions == [None]
    assert (await mgr.list()).items == []


@pytest.mark.asyncio
async def test_session_mode_disabled_is_stateless(mgr: SessionManager) -> None:
    agent = Memoryful()
    async with Runtime(session_manager=mgr) as rt:
        rt.register("classifier", agent, session_mode="disabled")
        out = await rt.call("classifier", Message.user("spam?"), user="alice")
        assert out.text == "stateless"
        s = await mgr.create("classifier", user_id="alice")
        with pytest.raises(InvalidArgument, match="session_mode='disabled'"):
            await rt.call_with_session("classifier", Message.user("x"), s.id)
    assert agent.seen == []
    assert [i.message_count for i in (await mgr.list()).items] == [0]


@pytest.mark.asyncio
async def test_a_plain_agent_gets_only_the_input_and_current_session_is_set(
    mgr: SessionManager,
) -> None:
    echo = Echo()
    async with Runtime(session_manager=mgr) as rt:
        rt.register("echo", echo)
        msg = Message.user("hi")
        await rt.call("echo", msg, user="alice")
    assert current_session() is None
    (seen,) = echo.inputs
    assert seen.id == msg.id and seen.seq == 1
    (during,) = echo.sessions
    assert during is not None and during.user_id == "alice"


# -- what a call persists ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_repeated_call_never_duplicates_input_or_reply(mgr: SessionManager) -> None:
    echo = Echo()
    async with Runtime(session_manager=mgr) as rt:
        rt.register("echo", echo)
        msg = Message.user("once")
        first = await rt.call("echo", msg, user="alice")
        again = await rt.call("echo", msg, user="alice")
    assert again == first
    assert len(echo.inputs) == 1  # the stored reply was returned, the agent did not run again
    s = await only_session(mgr)
    assert [m.text for m in await s.get_messages()] == ["once", "echo: once"]


@pytest.mark.asyncio
async def test_an_agent_error_leaves_the_input_and_the_retry_resumes(mgr: SessionManager) -> None:
    agent = Failing()
    async with Runtime(session_manager=mgr) as rt:
        rt.register("flaky", agent)
        msg = Message.user("please")
        with pytest.raises(AgentError, match="model unavailable") as info:
            await rt.call("flaky", msg, user="alice")
        s = await only_session(mgr)
        assert info.value.session_id == s.id and s.id in str(info.value)
        assert isinstance(info.value.__cause__, RuntimeError)
        assert [m.id for m in await s.get_messages()] == [msg.id]
        out = await rt.call("flaky", msg, user="alice")
    assert out.text == "recovered" and agent.runs == 2
    assert [m.text for m in await s.get_messages()] == ["please", "recovered"]


@pytest.mark.asyncio
async def test_a_timeout_writes_nothing_more_and_names_the_session(mgr: SessionManager) -> None:
    async with Runtime(session_manager=mgr, timeout=0.05) as rt:
        rt.register("slow", Slow(5))
        with pytest.raises(CallTimeout) as info:  # Slow(5) would take 5 s without it
            await rt.call("slow", Message.user("hurry"), user="alice")
    assert isinstance(info.value, TimeoutError)
    s = await only_session(mgr)
    assert info.value.session_id == s.id and info.value.agent == "slow"
    assert [m.text for m in await s.get_messages()] == ["hurry"]


@pytest.mark.asyncio
async def test_a_bad_reply_is_an_agent_error_and_not_stored(mgr: SessionManager) -> None:
    class Bad:
        async def execute(self, input: Message) -> Any:
            return "not a message"

    class Parrot:
        async def execute(self, input: Message) -> Message:
            return input

    async with Runtime(session_manager=mgr) as rt:
        rt.register("bad", Bad())
        rt.register("parrot", Parrot())
        with pytest.raises(AgentError, match="returned a str"):
            await rt.call("bad", Message.user("x"), user="alice")
        with pytest.raises(AgentError, match="returned its input"):
            await rt.call("parrot", Message.user("y"), user="alice")
        with pytest.raises(AgentError, match="stateless call"):
            await rt.call("bad", Message.user("z"))
    for info in (await mgr.list()).items:
        assert info.message_count == 1


@pytest.mark.asyncio
async def test_a_session_aware_agent_may_store_its_own_messages_first(
    mgr: SessionManager,
) -> None:
    class ToolUser:
        async def execute(self, input: Message) -> Message:
            raise AssertionError("not called with a session")

        async def execute_with_session(self, input: Message, session: Session) -> Message:
            await session.append_message(Message.tool("12°C", tool_call_id="c1"))
            return Message.assistant("It is 12°C")

    async with Runtime(session_manager=mgr) as rt:
        rt.register("weather", ToolUser())
        out = await rt.call("weather", Message.user("weather?"), user="alice")
    assert out.seq == 3
    s = await only_session(mgr)
    assert [m.role for m in await s.get_messages()] == ["user", "tool", "assistant"]


@pytest.mark.asyncio
async def test_concurrent_calls_on_one_session_are_serialized(mgr: SessionManager) -> None:
    class Thinker:
        async def execute_with_session(self, input: Message, session: Session) -> Message:
            before = len(await session.get_messages())
            await asyncio.sleep(0.01)
            after = len(await session.get_messages())
            assert before == after  # nobody else wrote meanwhile
            return Message.assistant("re: " + input.text)

        async def execute(self, input: Message) -> Message:
            raise AssertionError

    async with Runtime(session_manager=mgr) as rt:
        rt.register("t", Thinker())
        await asyncio.gather(
            *(rt.call("t", Message.user(f"q{i}"), user="alice") for i in range(10))
        )
    history = await (await only_session(mgr)).get_messages()
    assert len(history) == 20
    for question, answer in zip(history[::2], history[1::2], strict=True):
        assert answer.text == "re: " + question.text
        assert answer.metadata[REPLY_TO] == question.id


@pytest.mark.asyncio
async def test_max_concurrent_calls_bounds_parallel_runs(mgr: SessionManager) -> None:
    running = peak = 0

    class Counting:
        async def execute(self, input: Message) -> Message:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1
            return Message.assistant("ok")

    async with Runtime(session_manager=mgr, max_concurrent_calls=3) as rt:
        rt.register("c", Counting())
        await asyncio.gather(*(rt.call("c", Message.user("x"), user=f"u{i}") for i in range(12)))
    assert peak == 3


class Intruding(MemoryBackend):
    """Another writer appends just before our appends number ``on`` (0-based), or all. It
    writes outside the turn protocol (no lease), like an application storing messages."""

    def __init__(self, on: set[int] | None = None) -> None:
        super().__init__()
        self.on = on
        self.count = 0

    async def append_messages(
        self, session_id: str, messages: Sequence[Message], *, expected_seq: int | None = None
    ) -> list[Message]:
        if expected_seq is not None:
            if self.on is None or self.count in self.on:
                # A whole turn from another process lands just before our write.
                q = Message.user("other process")
                a = Message.assistant("other reply", metadata={REPLY_TO: q.id})
                await super().append_messages(session_id, [q, a])
            self.count += 1
        return await super().append_messages(session_id, messages, expected_seq=expected_seq)


class IntrudingNoLeases(Intruding, NoLeases):
    """The same, on a backend without turn leases (the optimistic protocol)."""


INTRUDERS = pytest.mark.parametrize("intruding", [Intruding, IntrudingNoLeases])


@pytest.mark.asyncio
@INTRUDERS
async def test_conflicts_from_other_writers_are_retried_on_the_new_head(
    intruding: type[Intruding],
) -> None:
    # Append 0 (the input) and append 2 (the reply, after the input's retry) conflict.
    async with SessionManager(intruding(on={0, 2})) as mgr:
        async with Runtime(session_manager=mgr) as rt:
            rt.register("echo", Echo())
            out = await rt.call("echo", Message.user("hi"), user="alice")
        history = await (await only_session(mgr)).get_messages()
    texts_ = [m.text for m in history]
    assert texts_ == [
        "other process",
        "other reply",
        "hi",
        "other process",
        "other reply",
        "echo: hi",
    ]
    assert out.seq == 6 and len({m.id for m in history}) == 6


@pytest.mark.asyncio
@INTRUDERS
async def test_endless_conflicts_give_up_with_the_session_named(
    intruding: type[Intruding],
) -> None:
    async with SessionManager(intruding()) as mgr:
        async with Runtime(session_manager=mgr) as rt:
            rt.register("echo", Echo())
            with pytest.raises(ConflictError, match="kept changing") as info:
                await rt.call("echo", Message.user("hi"), user="alice")
        s = await only_session(mgr)
    assert s.id in str(info.value)


@pytest.mark.asyncio
async def test_two_runtimes_on_one_file_store_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store"
    async with SessionManager(url) as m1, SessionManager(url) as m2:
        s = await m1.create("echo", user_id="alice")
        rts = [Runtime(session_manager=m) for m in (m1, m2)]
        for rt in rts:
            rt.register("echo", Echo())
            await rt.start()
        msgs = [Message.user(f"q{i}") for i in range(10)]
        await asyncio.gather(
            *(rts[i % 2].call_with_session("echo", m, s.id) for i, m in enumerate(msgs))
        )
        for rt in rts:
            await rt.stop()
        history = await s.get_messages()
    assert len(history) == 20 and len({m.id for m in history}) == 20
    assert [m.seq for m in history] == list(range(1, 21))
    # Turns never interleave, even between runtimes that share no lock.
    for question, answer in zip(history[::2], history[1::2], strict=True):
        assert answer.metadata[REPLY_TO] == question.id
    assert {m.id for m in history[::2]} == {m.id for m in msgs}


@pytest.mark.asyncio
async def test_a_turn_running_elsewhere_is_waited_for(both: SessionManager) -> None:
    mgr = both
    s = await mgr.create("echo", user_id="alice")
    if leased(mgr):  # the other process holds the session's turn lease, as its runtime would
        assert await mgr.backend.acquire_turn(s.id, "other process", 30.0)  # type: ignore[attr-defined]
    other = await s.append_message(Message.user("first, from another process"))

    async def other_process_answers() -> None:
        await asyncio.sleep(0.2)
        reply = Message.assistant("answer to first", metadata={REPLY_TO: other.id})
        await s.append_message(reply, expected_seq=1)
        if leased(mgr):
            await mgr.backend.release_turn(s.id, "other process")  # type: ignore[attr-defined]

    async with Runtime(session_manager=mgr) as rt:
        rt.register("echo", Echo())
        await asyncio.gather(
            other_process_answers(), rt.call_with_session("echo", Message.user("second"), s.id)
        )
    # The second turn went in only after the other process's answer: it waited.
    assert [m.text for m in await s.get_messages()] == [
        "first, from another process", "answer to first", "second", "echo: second"
    ]  # fmt: skip


@pytest.mark.asyncio
async def test_a_turn_that_waits_logs_it_at_debug(
    both: SessionManager, caplog: pytest.LogCaptureFixture
) -> None:
    mgr = both
    s = await mgr.create("echo", user_id="alice")
    if leased(mgr):
        assert await mgr.backend.acquire_turn(s.id, "other process", 30.0)  # type: ignore[attr-defined]
    other = await s.append_message(Message.user("first, from another process"))

    async def other_process_answers() -> None:
        await asyncio.sleep(0.2)
        await s.append_message(
            Message.assistant("answer", metadata={REPLY_TO: other.id}), expected_seq=1
        )
        if leased(mgr):
            await mgr.backend.release_turn(s.id, "other process")  # type: ignore[attr-defined]

    caplog.set_level(logging.DEBUG, logger="aixgo.runtime")
    async with Runtime(session_manager=mgr) as rt:
        rt.register("echo", Echo())
        await asyncio.gather(
            other_process_answers(), rt.call_with_session("echo", Message.user("second"), s.id)
        )
    (waited,) = [r for r in caplog.records if r.name == "aixgo.runtime"]
    assert waited.levelno == logging.DEBUG
    want = "another turn holds the lease" if leased(mgr) else "waiting for the reply"
    assert waited.getMessage().startswith(f"session {s.id}: ") and want in waited.getMessage()


@pytest.mark.asyncio
async def test_a_dead_turn_is_waited_for_at_most_the_turn_bound(both: SessionManager) -> None:
    mgr = both
    s = await mgr.create("echo", user_id="alice")
    if leased(mgr):  # a process that died holding the lease: it expires after its ttl
        assert await mgr.backend.acquire_turn(s.id, "dead process", 1.3)  # type: ignore[attr-defined]
    await s.append_message(Message.user("from a process that died"))
    async with Runtime(session_manager=mgr, timeout=0.3) as rt:
        rt.register("echo", Echo())
        t0 = time.monotonic()
        await rt.call_with_session("echo", Message.user("next"), s.id)  # returns: bounded
        assert time.monotonic() - t0 >= 1.25  # it did wait, for timeout + 1 s or the ttl
    assert await texts(mgr, s.id) == ["from a process that died", "next", "echo: next"]


@pytest.mark.asyncio
async def test_a_live_turn_longer_than_the_bound_is_a_conflict(mgr: SessionManager) -> None:
    s = await mgr.create("echo", user_id="alice")
    assert await mgr.backend.acquire_turn(s.id, "busy process", 30.0)  # type: ignore[attr-defined]

    async def keep_renewing() -> None:
        while True:
            await asyncio.sleep(0.1)
            assert await mgr.backend.renew_turn(s.id, "busy process", 30.0)  # type: ignore[attr-defined]

    renewing = asyncio.create_task(keep_renewing())
    try:
        async with Runtime(session_manager=mgr, timeout=0.1, turn_lease_ttl=0.2) as rt:
            rt.register("echo", Echo())
            t0 = time.monotonic()
            with pytest.raises(ConflictError, match="still running") as info:
                await rt.call_with_session("echo", Message.user("next"), s.id)
            assert 1.1 <= time.monotonic() - t0 < 5  # waited for the turn bound, then gave up
    finally:
        renewing.cancel()
    assert s.id in str(info.value)
    assert await s.get_messages() == []  # nothing written


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_waiting")
async def test_reject_refuses_an_unanswered_turn_without_leases() -> None:
    async with SessionManager(NoLeases()) as mgr:
        s = await mgr.create("echo", user_id="alice")
        await s.append_message(Message.user("running in another process"))
        async with Runtime(session_manager=mgr, turn_policy="reject") as rt:
            rt.register("echo", Echo())
            with pytest.raises(ConflictError, match="'reject'"):
                await rt.call_with_session("echo", Message.user("next"), s.id)
        assert await texts(mgr, s.id) == ["running in another process"]


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_waiting")
async def test_reject_refuses_at_once_while_a_turn_runs(mgr: SessionManager) -> None:
    s = await mgr.create("g", user_id="alice")
    assert await mgr.backend.acquire_turn(s.id, "other process", 30.0)  # type: ignore[attr-defined]
    gate = asyncio.Event()

    running = asyncio.Event()

    class Gated:
        async def execute(self, input: Message) -> Message:
            running.set()
            await gate.wait()
            return Message.assistant("done: " + input.text)

    async with Runtime(session_manager=mgr, turn_policy="reject") as rt:
        rt.register("g", Gated())
        with pytest.raises(ConflictError, match="'reject'"):
            await rt.call_with_session("g", Message.user("elsewhere"), s.id)
        await mgr.backend.release_turn(s.id, "other process")  # type: ignore[attr-defined]
        first = asyncio.create_task(rt.call_with_session("g", Message.user("one"), s.id))
        await running.wait()
        with pytest.raises(ConflictError, match="'reject'"):  # the same runtime's turn
            await rt.call_with_session("g", Message.user("two"), s.id)
        gate.set()
        assert (await first).text == "done: one"
    assert await texts(mgr, s.id) == ["one", "done: one"]


@pytest.mark.asyncio
async def test_the_lease_is_released_after_errors_and_cancellation(mgr: SessionManager) -> None:
    backend = mgr.backend
    assert isinstance(backend, TurnLeases)
    gate = asyncio.Event()

    running = asyncio.Event()

    class Hanging:
        async def execute(self, input: Message) -> Message:
            running.set()
            await gate.wait()
            return Message.assistant("never")

    async with Runtime(session_manager=mgr) as rt:
        rt.register("flaky", Failing())
        rt.register("hang", Hanging())
        with pytest.raises(AgentError):
            await rt.call("flaky", Message.user("x"), user="alice")
        s = await mgr.get_or_create("flaky", "alice")
        assert await backend.acquire_turn(s.id, "probe", 1.0) is not None
        await backend.release_turn(s.id, "probe")
        call = asyncio.create_task(rt.call("hang", Message.user("y"), user="bob"))
        await running.wait()
        h = await mgr.get_or_create("hang", "bob")
        assert await backend.acquire_turn(h.id, "probe", 1.0) is None  # held while it runs
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.sleep(0)  # the shielded release
        assert await backend.acquire_turn(h.id, "probe", 1.0) is not None


@pytest.mark.asyncio
async def test_a_lost_lease_keeps_the_reply_out_when_another_turn_started(
    mgr: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aixgo.turn

    async def stuck(self: object) -> None:  # renewals never happen, as in a stuck process
        await asyncio.Event().wait()

    monkeypatch.setattr(aixgo.turn._Lease, "_renew_forever", stuck)
    gate = asyncio.Event()

    running = asyncio.Event()

    class Stuck:
        async def execute(self, input: Message) -> Message:
            running.set()
            await gate.wait()
            return Message.assistant("late reply")

    async with Runtime(session_manager=mgr, turn_lease_ttl=0.15) as rt:
        rt.register("stuck", Stuck())
        s = await mgr.create("stuck", user_id="alice")
        call = asyncio.create_task(rt.call_with_session("stuck", Message.user("slow"), s.id))
        await running.wait()
        backend = mgr.backend
        assert isinstance(backend, TurnLeases)
        # Not renewed, the lease expires; another process's turn takes it and stores its input.
        await asyncio.sleep(0.3)
        assert await backend.acquire_turn(s.id, "other process", 30.0) is not None
        await s.append_message(Message.user("newer turn"))
        gate.set()
        with pytest.raises(ConflictError, match="lost its lease") as info:
            await call
        assert "call again with the same message" in str(info.value)
    assert await texts(mgr, s.id) == ["slow", "newer turn"]  # no reply in between


@pytest.mark.asyncio
async def test_a_lease_lost_while_the_agent_runs_logs_a_warning(
    mgr: SessionManager, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    backend = mgr.backend
    assert isinstance(backend, TurnLeases)

    async def refused(session_id: str, owner: str, ttl: float) -> bool:
        return False  # as a store answers once the lease expired and another turn took it

    monkeypatch.setattr(backend, "renew_turn", refused)
    gate, running = asyncio.Event(), asyncio.Event()

    class Stuck:
        async def execute(self, input: Message) -> Message:
            running.set()
            await gate.wait()
            return Message.assistant("late reply")

    caplog.set_level(logging.DEBUG, logger="aixgo.runtime")
    async with Runtime(session_manager=mgr, turn_lease_ttl=0.15) as rt:
        rt.register("stuck", Stuck())
        s = await mgr.create("stuck", user_id="alice")
        call = asyncio.create_task(rt.call_with_session("stuck", Message.user("slow"), s.id))
        await running.wait()
        await asyncio.sleep(0.3)  # a renewal failed; the lease expired
        assert await backend.acquire_turn(s.id, "other process", 30.0) is not None
        gate.set()
        with pytest.raises(ConflictError, match="lost its lease"):
            await call
    records = [r for r in caplog.records if r.name == "aixgo.runtime"]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert warnings == [f"session {s.id}: the turn lost its lease while the agent ran (it "
                        "expired or another turn took it)"]  # fmt: skip


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_waiting")
async def test_an_old_unanswered_input_is_not_waited_for(both: SessionManager) -> None:
    mgr = both
    old = await mgr.create("echo", user_id="bob")
    await old.append_message(Message.user("long ago", created_at="2020-01-01T00:00:00Z"))
    async with Runtime(session_manager=mgr) as rt:
        rt.register("echo", Echo())
        await rt.call_with_session("echo", Message.user("now"), old.id)


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_waiting")
@pytest.mark.parametrize("steps", [1, 40])
async def test_a_resumed_turn_does_not_wait_for_its_own_tool_results(
    both: SessionManager, steps: int
) -> None:
    mgr = both
    s = await mgr.create("echo", user_id="alice")
    await s.append_messages([Message.user("earlier"), Message.assistant("echo: earlier")])
    question = Message.user("weather?")
    # What a run that died after many tool calls left behind (in another process): more
    # steps after its input than any fixed look-back would see.
    done = [
        m
        for i in range(steps)
        for m in (
            Message.assistant(tool_calls=[ToolCall(id=f"c{i}", name="weather")]),
            Message.tool(f"{i}°C", tool_call_id=f"c{i}"),
        )
    ]
    await s.append_messages([question, *done])
    async with Runtime(session_manager=mgr) as rt:
        rt.register("echo", Echo())
        out = await rt.call_with_session("echo", question, s.id)
    texts = [m.text for m in await s.get_messages()]
    assert texts[:3] == ["earlier", "echo: earlier", "weather?"]
    assert texts[-1] == "echo: weather?" and len(texts) == 4 + 2 * steps
    assert out.metadata[REPLY_TO] == question.id


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_waiting")
async def test_messages_an_application_stores_itself_are_not_waited_for(
    both: SessionManager,
) -> None:
    mgr = both
    s = await mgr.create("echo", user_id="alice")
    await s.append_message(Message.system("You are terse."))
    g = await mgr.create("echo", user_id="bob")
    await g.append_messages([Message.system("You are terse."), Message.assistant("Hi! Ask me.")])
    async with Runtime(session_manager=mgr) as rt:
        rt.register("echo", Echo())
        await rt.call_with_session("echo", Message.user("a"), s.id)
        await rt.call_with_session("echo", Message.user("b"), g.id)
    assert [m.text for m in await g.get_messages()] == [
        "You are terse.",
        "Hi! Ask me.",
        "b",
        "echo: b",
    ]


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_waiting")
async def test_a_failed_turn_in_this_process_is_not_waited_for(both: SessionManager) -> None:
    mgr = both

    class ToolThenFail:
        def __init__(self) -> None:
            self.failed = False

        async def execute(self, input: Message) -> Message:
            raise AssertionError

        async def execute_with_session(self, input: Message, session: Session) -> Message:
            if not self.failed:
                self.failed = True
                await session.append_message(Message.tool("partial", tool_call_id="c1"))
                raise RuntimeError("died after a tool call")
            return Message.assistant("recovered")

    async with Runtime(session_manager=mgr) as rt:
        rt.register("flaky", Failing())
        rt.register("tools", ToolThenFail())
        for name in ("flaky", "tools"):
            with pytest.raises(AgentError):
                await rt.call(name, Message.user("lost"), user="alice")
            out = await rt.call(name, Message.user("new question"), user="alice")
            assert out.text == "recovered"


# -- a run killed between input and output -------------------------------------------------

WORKER = """
import asyncio, pathlib, sys, time
from aixgo import Message, Runtime

url, marker, message_id = sys.argv[1:4]

class Stuck:
    async def execute(self, input):
        pathlib.Path(marker).write_text(input.id)
        await asyncio.sleep(600)  # killed here, between input and output
        return Message.assistant("never")

async def main():
    async with Runtime(session_manager=url) as rt:
        rt.register("assistant", Stuck())
        await rt.call("assistant", Message.user("Remember: my name is Alice", id=message_id),
                      user="alice")

asyncio.run(main())
"""


@pytest.mark.parametrize("store", ["file", "redis", "postgresql"])
def test_a_run_killed_between_input_and_output_is_resumed(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    url = {
        "file": lambda: f"file://{tmp_path}/store",
        "redis": lambda: str(request.getfixturevalue("redis_url")),
        "postgresql": lambda: str(request.getfixturevalue("pg_url")),
    }[store]()
    marker = tmp_path / "running"
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    message_id = new_id()
    env = {**os.environ, "AIXGO_SESSION_URL": url}
    proc = subprocess.Popen([sys.executable, str(script), url, str(marker), message_id], env=env)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "the worker died before the agent ran"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    agent = Memoryful()

    async def resume() -> tuple[Message, list[Message]]:
        async with Runtime(session_manager=url) as rt:
            rt.register("assistant", agent)
            s = await rt.session_manager.get_or_create("assistant", "alice")
            assert [m.id for m in await s.get_messages()] == [message_id]  # input survived
            out = await rt.call(
                "assistant",
                Message.user("Remember: my name is Alice", id=message_id),
                user="alice",
            )
            return out, await s.get_messages()

    out, history = asyncio.run(resume())
    assert agent.seen == [["Remember: my name is Alice"]]  # the input, once
    assert [m.id for m in history] == [message_id, out.id]
    assert [m.seq for m in history] == [1, 2]
    assert is_id(history[0].id)


TURNS = """
import asyncio, random, sys
from aixgo import Message, Runtime

url, session_id, name = sys.argv[1:4]

class Thinker:
    async def execute(self, input):
        await asyncio.sleep(random.uniform(0, 0.02))
        return Message.assistant("re: " + input.text)

async def main():
    async with Runtime(session_manager=url, timeout=30) as rt:
        rt.register("t", Thinker())
        for i in range(15):
            await rt.call_with_session("t", Message.user(f"{name}-{i}"), session_id)

asyncio.run(main())
"""


def test_turns_from_separate_processes_never_interleave(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store"

    async def create() -> str:
        async with SessionManager(url) as m:
            return (await m.create("t", user_id="alice")).id

    session_id = asyncio.run(create())
    script = tmp_path / "turns.py"
    script.write_text(textwrap.dedent(TURNS))
    procs = [
        subprocess.Popen([sys.executable, str(script), url, session_id, name])
        for name in ("p1", "p2", "p3")
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0

    async def read() -> list[Message]:
        async with SessionManager(url) as m:
            return await (await m.get(session_id)).get_messages()

    history = asyncio.run(read())
    assert len(history) == 90
    for question, answer in zip(history[::2], history[1::2], strict=True):
        assert question.role == "user" and answer.text == "re: " + question.text
        assert answer.metadata[REPLY_TO] == question.id
    for name in ("p1", "p2", "p3"):  # each process's turns in its own order
        mine = [m.text for m in history[::2] if m.text.startswith(name)]
        assert mine == [f"{name}-{i}" for i in range(15)]


@pytest.mark.asyncio
async def test_stop_waits_for_running_calls(mgr: SessionManager) -> None:
    rt = Runtime(session_manager=mgr)
    rt.register("slow", Slow(0.2))
    await rt.start()
    call = asyncio.create_task(rt.call("slow", Message.user("x"), user="alice"))
    await asyncio.sleep(0.05)
    await rt.stop()
    assert call.done() and (await call).text == "late"
    assert (await only_session(mgr)).id


@pytest.mark.asyncio
async def test_a_dead_turn_is_resumed_behind_another_dead_turn(both: SessionManager) -> None:
    s = await both.create("echo", user_id="alice")
    first, second = Message.user("first, died"), Message.user("second, died too")
    await s.append_messages([first, second])  # two runs that died before answering
    async with Runtime(session_manager=both, timeout=0.1) as rt:
        rt.register("echo", Echo())
        out = await rt.call_with_session("echo", first, s.id)
    assert out.metadata[REPLY_TO] == first.id
    assert await texts(both, s.id) == ["first, died", "second, died too", "echo: first, died"]


@pytest.mark.asyncio
async def test_agent_names_and_input_checks_are_refused_before_anything_is_stored() -> None:
    class Picky(Echo):
        def check_input(self, input: Message) -> None:
            if "\x07" in input.text:
                raise InvalidMessage("no bells")

    rt = Runtime(session_manager="memory://")
    rt.register("picky", Picky())
    async with rt:
        for bad in ("", "a\x00b", ["a", "list"], None):
            with pytest.raises(InvalidIdentifier, match="agent name"):
                await rt.call(bad, Message.user("x"), user="alice")  # type: ignore[arg-type]
        with pytest.raises(AgentNotFound, match="registered agents: picky"):
            await rt.call("nobody", Message.user("x"), user="alice")
        with pytest.raises(InvalidMessage, match="no bells"):
            await rt.call("picky", Message.user("ring\x07"), user="alice")
        assert (await rt.session_manager.list()).items == []
        assert (await rt.call("picky", Message.user("fine"), user="alice")).text.endswith("fine")
