"""``Runtime.stream``: typed events, the same turn as ``call``, and a consumer that leaves early
(break, cancellation) leaving the turn resumable as a crash would."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aixgo import Message, Runtime, ToolCall
from aixgo.agent import StreamingAgent
from aixgo.errors import (
    AgentError,
    AgentNotFound,
    CallTimeout,
    ConflictError,
    InvalidArgument,
    InvalidIdentifier,
    InvalidMessage,
)
from aixgo.events import EVENT_ADAPTER, Delta, Event, Reply, Step, parse_event
from aixgo.runtime import REPLY_TO
from aixgo.session import Session, SessionManager, TurnLeases

from tests.core.helpers import NoLeases, collect


@pytest_asyncio.fixture(params=["memory", "no-leases", "file"])
async def mgr(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionManager]:
    backend: object
    if request.param == "memory":
        backend = "memory://"
    elif request.param == "no-leases":
        backend = NoLeases()
    else:
        backend = f"file://{tmp_path / 'sessions'}"
    async with SessionManager(backend) as m:
        yield m


class Worker:
    """Streams like a tool-using agent: stores a tool request and its result (each a Step),
    then streams its answer in chunks. A run resumed after a crash finds its steps stored and
    does not run the tool again. ``block`` makes a run stop after its first chunk until
    cancelled."""

    def __init__(self, *, block: bool = False) -> None:
        self.block = block
        self.tool_runs = 0
        self.runs = 0
        self.first_chunk = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def execute(self, input: Message) -> Message:
        raise AssertionError("a streaming agent is streamed, also by call()")

    async def stream_with_session(
        self, input: Message, session: Session | None
    ) -> AsyncIterator[Delta | Step | Message]:
        self.runs += 1
        try:
            steps: list[Message] = []
            if session is not None:
                history = await session.get_messages()
                at = next(i for i, m in enumerate(history) if m.id == input.id)
                steps = history[at + 1 :]
            if not steps:
                request = Message.assistant(tool_calls=[ToolCall(id="c1", name="count")])
                if session is not None:
                    request = await session.append_message(request, expected_seq=input.seq)
                yield Step(message=request)
                self.tool_runs += 1
                result = Message.tool(f"run {self.tool_runs}", tool_call_id="c1")
                if session is not None:
                    result = await session.append_message(result, expected_seq=request.seq)
                yield Step(message=result)
            for chunk in ("Hello", ", ", input.text):
                yield Delta(text=chunk)
                self.first_chunk.set()
                if self.block:
                    self.block = False  # only the first run blocks
                    await asyncio.Event().wait()
            yield Message.assistant(f"Hello, {input.text}")
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


class Plain:
    """A non-streaming agent."""

    def __init__(self) -> None:
        self.runs = 0

    async def execute(self, input: Message) -> Message:
        self.runs += 1
        return Message.assistant("plain: " + input.text)


async def history(mgr: SessionManager, agent: str, user: str) -> list[Message]:
    s = await mgr.get_or_create(agent, user)
    return await s.get_messages()


# -- events --------------------------------------------------------------------------------


def test_events_round_trip_through_json_by_their_type() -> None:
    stored = Message.assistant("hi").model_copy(update={"seq": 3})
    for event in (Delta(text="chunk"), Step(message=stored), Reply(message=stored)):
        wire = EVENT_ADAPTER.dump_json(event)
        assert parse_event(wire) == event
        assert parse_event(wire.decode()) == event
        assert parse_event(event.model_dump(mode="json")) == event
        assert type(parse_event(wire)) is type(event)
    assert Delta(text="x").type == "delta" and Reply(message=stored).type == "reply"


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ('{"type": "shout", "text": "x"}', "shout"),
        ('{"type": "delta"}', "text"),
        ('{"type": "step", "message": {"role": "wizard"}}', "role"),
        ('{"type": "delta", "text": "x", "extra": 1}', "extra"),
        ("not json", "JSON"),
    ],
)
def test_a_malformed_event_is_a_typed_error(data: str, says: str) -> None:
    with pytest.raises(InvalidArgument, match="not an event") as info:
        parse_event(data)
    assert says.lower() in str(info.value).lower()


def test_a_streaming_agent_is_recognised() -> None:
    assert isinstance(Worker(), StreamingAgent)
    assert not isinstance(Plain(), StreamingAgent)


# -- what a stream yields --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_non_streaming_agent_yields_one_stored_reply(mgr: SessionManager) -> None:
    agent = Plain()
    async with Runtime(session_manager=mgr) as rt:
        rt.register("plain", agent)
        message = Message.user("hi")
        events = await collect(rt.stream("plain", message, user="alice"))
        assert [type(e) for e in events] == [Reply]
        reply = events[0].message  # type: ignore[union-attr]
        assert reply.text == "plain: hi" and reply.seq == 2
        assert reply.metadata[REPLY_TO] == message.id
        assert await history(mgr, "plain", "alice") == [
            message.model_copy(update={"seq": 1}),
            reply,
        ]
        # Answered already: the same stored reply, without running the agent again.
        assert await collect(rt.stream("plain", message, user="alice")) == events
        assert agent.runs == 1


@pytest.mark.asyncio
async def test_a_streaming_agent_yields_deltas_steps_and_the_stored_reply_last(
    mgr: SessionManager,
) -> None:
    async with Runtime(session_manager=mgr) as rt:
        rt.register("worker", Worker())
        message = Message.user("Ada")
        events = await collect(rt.stream("worker", message, user="alice"))
    stored = await history(mgr, "worker", "alice")
    assert [m.role for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert events == [
        Step(message=stored[1]),
        Step(message=stored[2]),
        Delta(text="Hello"),
        Delta(text=", "),
        Delta(text="Ada"),
        Reply(message=stored[3]),
    ]
    assert [e.message.seq for e in events if not isinstance(e, Delta)] == [2, 3, 4]
    assert "".join(e.text for e in events if isinstance(e, Delta)) == stored[3].text


@pytest.mark.asyncio
async def test_call_is_the_stream_consumed_to_its_reply(mgr: SessionManager) -> None:
    worker = Worker()
    async with Runtime(session_manager=mgr) as rt:
        rt.register("worker", worker)
        message = Message.user("Ada")
        out = await rt.call("worker", message, user="alice")
        # The streaming method ran (execute would have failed), storing its steps.
        assert worker.runs == 1 and worker.tool_runs == 1
        assert [m.role for m in await history(mgr, "worker", "alice")] == [
            "user", "assistant", "tool", "assistant",
        ]  # fmt: skip
        assert out.seq == 4 and out.text == "Hello, Ada"
        # The same message streamed: the turn is answered, so only its stored reply.
        assert await collect(rt.stream("worker", message, user="alice")) == [Reply(message=out)]
        assert worker.runs == 1


@pytest.mark.asyncio
async def test_a_stateless_stream_stores_nothing() -> None:
    async with Runtime(session_manager="memory://") as rt:
        rt.register("worker", Worker(), session_mode="disabled")
        events = await collect(rt.stream("worker", Message.user("Ada"), user="alice"))
        assert [e.type for e in events] == ["step", "step", "delta", "delta", "delta", "reply"]
        assert all(e.message.seq is None for e in events if not isinstance(e, Delta))
        assert (await rt.session_manager.list()).items == []


@pytest.mark.asyncio
async def test_stream_with_session_continues_that_session(mgr: SessionManager) -> None:
    s = await mgr.create("plain", user_id="alice")
    async with Runtime(session_manager=mgr) as rt:
        rt.register("plain", Plain())
        (event,) = await collect(rt.stream_with_session("plain", Message.user("one"), s.id))
        assert isinstance(event, Reply) and event.message.seq == 2
        (event,) = await collect(rt.stream("plain", Message.user("two"), session=s.id))
    assert [m.text for m in await s.get_messages()] == ["one", "plain: one", "two", "plain: two"]


@pytest.mark.asyncio
async def test_bad_calls_fail_on_iteration_and_write_nothing(mgr: SessionManager) -> None:
    async with Runtime(session_manager=mgr) as rt:
        rt.register("plain", Plain())
        with pytest.raises(AgentNotFound):
            await collect(rt.stream("nobody", Message.user("hi"), user="alice"))
        with pytest.raises(InvalidIdentifier):
            await collect(rt.stream("plain", Message.user("hi"), user="bad\x00user"))
        with pytest.raises(InvalidMessage):
            await collect(rt.stream("plain", "hi", user="alice"))  # type: ignore[arg-type]
    assert (await mgr.list()).items == []


class Broken:
    def __init__(self, how: str) -> None:
        self.how = how
        self.closed = False

    async def execute(self, input: Message) -> Message:
        raise AssertionError("streamed")

    async def stream_with_session(
        self, input: Message, session: Session | None
    ) -> AsyncIterator[object]:
        try:
            yield Delta(text="partial")
            if self.how == "wrong type":
                yield "some text"
            elif self.how == "after reply":
                yield Message.assistant("one")
                yield Message.assistant("two")
            elif self.how == "no reply":
                return
            elif self.how == "raises":
                raise RuntimeError("boom")
            elif self.how == "unstored step":
                yield Step(message=Message.tool("not stored", tool_call_id="c1"))
            yield Message.assistant("never")
        finally:
            self.closed = True


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("wrong type", "yielded a str"),
        ("after reply", "yielded a Message after its reply"),
        ("no reply", "without a reply"),
        ("raises", "RuntimeError: boom"),
        ("unstored step", "a Step with message .* which it did not store"),
    ],
)
async def test_a_streaming_agent_that_breaks_the_protocol_is_an_agent_error(
    mgr: SessionManager, how: str, says: str
) -> None:
    agent = Broken(how)
    async with Runtime(session_manager=mgr) as rt:
        rt.register("broken", agent)
        seen: list[Event] = []
        with pytest.raises(AgentError, match=says) as info:
            await collect(rt.stream("broken", Message.user("hi"), user="alice"), seen)
        assert seen == [Delta(text="partial")]
        assert info.value.session_id is not None
        with pytest.raises(AgentError, match=says):
            await rt.call("broken", Message.user("hi"), user="bob")
    assert agent.closed  # the agent's generator was closed, not left to the collector
    assert [m.text for m in await history(mgr, "broken", "alice")] == ["hi"]


# -- leaving early: the turn is cancelled and stays resumable --------------------------------


Blocked = tuple[Runtime, Worker, Message]


@pytest_asyncio.fixture
async def blocked(mgr: SessionManager) -> AsyncIterator[Blocked]:
    """A runtime on ``mgr`` serving ``worker``, a :class:`Worker` whose first run blocks after
    its first chunk, and the message every test sends it."""
    worker = Worker(block=True)
    async with Runtime(session_manager=mgr) as rt:
        rt.register("worker", worker)
        yield rt, worker, Message.user("Ada")


async def _resumes(rt: Runtime, mgr: SessionManager, worker: Worker, message: Message) -> None:
    """A new call with the same message finishes the turn: the input once, the tool run
    once, the chunks streamed from where the answer starts."""
    events = await collect(rt.stream("worker", message, user="alice"))
    stored = await history(mgr, "worker", "alice")
    assert [m.role for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert [m.id for m in stored].count(message.id) == 1
    assert stored[2].text == "run 1" and worker.tool_runs == 1
    assert [e.type for e in events] == ["delta", "delta", "delta", "reply"]
    assert events[-1] == Reply(message=stored[3])


@pytest.mark.asyncio
async def test_break_after_the_first_delta_cancels_the_turn_and_a_new_call_resumes_it(
    mgr: SessionManager, blocked: Blocked
) -> None:
    rt, worker, message = blocked
    seen: list[Event] = []
    async for ev in rt.stream("worker", message, user="alice"):
        seen.append(ev)
        if isinstance(ev, Delta):
            break
    assert [e.type for e in seen] == ["step", "step", "delta"]
    # Python closes the abandoned iterator soon after (its finalizer), cancelling the run.
    await asyncio.wait_for(worker.cancelled.wait(), 10)
    assert [m.role for m in await history(mgr, "worker", "alice")] == [
        "user", "assistant", "tool",
    ]  # fmt: skip
    await _resumes(rt, mgr, worker, message)


@pytest.mark.asyncio
async def test_closing_the_stream_ends_the_turn_before_it_returns(
    mgr: SessionManager, blocked: Blocked
) -> None:
    rt, worker, message = blocked
    async with contextlib.aclosing(rt.stream("worker", message, user="alice")) as events:
        async for ev in events:
            if isinstance(ev, Delta):
                break
    assert worker.cancelled.is_set()
    s = await mgr.get_or_create("worker", "alice")
    if isinstance(mgr.backend, TurnLeases):
        # The lease was given back: another process could take the turn right now.
        assert await mgr.backend.acquire_turn(s.id, "someone else", 5.0)
        await mgr.backend.release_turn(s.id, "someone else")
    await _resumes(rt, mgr, worker, message)


@pytest.mark.asyncio
async def test_cancelling_the_consumer_cancels_the_turn(
    mgr: SessionManager, blocked: Blocked
) -> None:
    rt, worker, message = blocked
    consumer = asyncio.create_task(collect(rt.stream("worker", message, user="alice")))
    await worker.first_chunk.wait()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert worker.cancelled.is_set()  # before the consumer's cancellation completed
    await _resumes(rt, mgr, worker, message)


@pytest.mark.asyncio
async def test_a_call_cancelled_mid_turn_resumes_the_same_way(
    mgr: SessionManager, blocked: Blocked
) -> None:
    rt, worker, message = blocked
    task = asyncio.create_task(rt.call("worker", message, user="alice"))
    await worker.first_chunk.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert worker.cancelled.is_set()
    await _resumes(rt, mgr, worker, message)


# -- runtime options apply to a stream as to a call ----------------------------------------


class Stalling:
    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.started = asyncio.Event()

    async def execute(self, input: Message) -> Message:
        raise AssertionError("streamed")

    async def stream_with_session(
        self, input: Message, session: Session | None
    ) -> AsyncIterator[Delta | Message]:
        self.started.set()
        yield Delta(text="thinking")
        await self.go.wait()
        yield Message.assistant("done: " + input.text)


@pytest.mark.asyncio
async def test_the_timeout_bounds_a_streamed_turn() -> None:
    async with SessionManager("memory://") as mgr, Runtime(session_manager=mgr, timeout=0.2) as rt:
        rt.register("stalling", Stalling())
        seen: list[Event] = []
        with pytest.raises(CallTimeout) as info:
            await collect(rt.stream("stalling", Message.user("hi"), user="alice"), seen)
        assert seen == [Delta(text="thinking")]
        assert info.value.session_id is not None
        assert [m.text for m in await history(mgr, "stalling", "alice")] == ["hi"]


@pytest.mark.asyncio
async def test_max_concurrent_calls_counts_streams() -> None:
    stalling, plain = Stalling(), Plain()
    async with Runtime(session_manager="memory://", max_concurrent_calls=1) as rt:
        rt.register("stalling", stalling)
        rt.register("plain", plain)
        stream = rt.stream("stalling", Message.user("hi"), user="alice")
        assert await anext(stream) == Delta(text="thinking")
        waiting = asyncio.create_task(rt.call("plain", Message.user("hi"), user="bob"))
        await asyncio.sleep(0.1)
        assert plain.runs == 0 and not waiting.done()  # the stream holds the only slot
        stalling.go.set()
        assert [e.type async for e in stream] == ["reply"]
        assert (await waiting).text == "plain: hi" and plain.runs == 1


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_waiting")
async def test_reject_refuses_a_call_while_a_stream_runs_on_the_session(
    mgr: SessionManager,
) -> None:
    stalling = Stalling()
    async with Runtime(session_manager=mgr, turn_policy="reject") as rt:
        rt.register("stalling", stalling)
        stream = rt.stream("stalling", Message.user("first"), user="alice")
        assert await anext(stream) == Delta(text="thinking")
        with pytest.raises(ConflictError, match="'reject'"):
            await rt.call("stalling", Message.user("second"), user="alice")
        with pytest.raises(ConflictError, match="'reject'"):
            await collect(rt.stream("stalling", Message.user("third"), user="alice"))
        stalling.go.set()
        (reply,) = [e async for e in stream]
        assert isinstance(reply, Reply) and reply.message.text == "done: first"
    assert [m.text for m in await history(mgr, "stalling", "alice")] == ["first", "done: first"]


@pytest.mark.asyncio
async def test_stop_waits_for_a_running_stream() -> None:
    stalling = Stalling()
    rt = Runtime(session_manager="memory://")
    await rt.start()
    rt.register("stalling", stalling)
    stream = rt.stream("stalling", Message.user("hi"), user="alice")
    assert await anext(stream) == Delta(text="thinking")
    stopping = asyncio.create_task(rt.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()
    stalling.go.set()
    assert [e.type async for e in stream] == ["reply"]
    await stopping


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_waiting")
async def test_without_leases_a_new_message_after_a_left_stream_does_not_wait() -> None:
    # The left turn's steps are this runtime's own abandoned turn, not a turn running
    # elsewhere: the next message goes after them at once.
    worker = Worker(block=True)
    async with SessionManager(NoLeases()) as mgr, Runtime(session_manager=mgr) as rt:
        rt.register("worker", worker)
        async with contextlib.aclosing(rt.stream("worker", Message.user("one"), user="alice")) as s:
            async for ev in s:
                if isinstance(ev, Delta):
                    break
        events = await collect(rt.stream("worker", Message.user("two"), user="alice"))
        assert events[-1].type == "reply"
        assert [m.text for m in await history(mgr, "worker", "alice")] == [
            "one", "", "run 1", "two", "", "run 2", "Hello, two",
        ]  # fmt: skip


class Flood:
    """Streams ``n`` one-letter deltas as fast as it is resumed, counting them."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.sent = 0

    async def execute(self, input: Message) -> Message:
        raise AssertionError("a streaming agent is always iterated")

    async def stream_with_session(
        self, input: Message, session: Session | None
    ) -> AsyncIterator[Delta | Message]:
        for _ in range(self.n):
            self.sent += 1
            yield Delta(text="x")
        yield Message.assistant("x" * self.n)


@pytest.mark.asyncio
@pytest.mark.parametrize("user", [None, "alice"])
async def test_a_slow_consumer_holds_the_agent_back_after_the_buffer(user: str | None) -> None:
    from aixgo.runtime import STREAM_BUFFER

    flood = Flood(20 * STREAM_BUFFER)
    async with Runtime(session_manager="memory://") as rt:
        rt.register("flood", flood)
        stream = rt.stream("flood", Message.user("go"), user=user)
        assert await anext(stream) == Delta(text="x")
        for _ in range(100):  # the agent's task gets every chance to run ahead
            await asyncio.sleep(0)
        # The buffer full, the one event taken, and the one the agent waits to hand over.
        assert flood.sent <= STREAM_BUFFER + 2
        events = [e async for e in stream]
        assert flood.sent == 20 * STREAM_BUFFER
        assert len(events) == 20 * STREAM_BUFFER  # the other deltas, then the reply
        assert events[-1].type == "reply" and events[-1].message.text == "x" * flood.n
