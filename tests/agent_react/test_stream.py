"""The ReAct agent streamed through ``Runtime.stream``: the scripted model deterministically,
``openai:`` over real server-sent events from a local HTTP server (text and tool-call pieces
assembled), and a consumer leaving mid-answer leaves a turn that resumes without running a
finished tool again."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence

import pytest
from aixgo import Message, Runtime
from aixgo.errors import AgentError
from aixgo.events import Delta, Event, Reply, Step
from aixgo.session import SessionManager
from aixgo_agent_react import ReActAgent, tool
from aixgo_agent_react.models.openai import OpenAIModel
from aixgo_agent_react.tools import Tool

from .conftest import ChatServer, call, completion
from .conftest import Reply as HTTPReply


async def collect(stream: AsyncIterator[Event]) -> list[Event]:
    return [ev async for ev in stream]


async def stored(mgr: SessionManager, agent: str = "assistant") -> list[Message]:
    return await (await mgr.get_or_create(agent, "alice")).get_messages()


class Weather:
    """A tool that counts its runs."""

    def __init__(self) -> None:
        self.runs = 0

        @tool
        def weather(city: str) -> str:
            """Today's weather in a city."""
            self.runs += 1
            return f"12°C in {city}"

        self.tool = weather


@pytest.mark.asyncio
async def test_the_scripted_model_streams_steps_then_its_answer_a_word_at_a_time(
    mgr: SessionManager,
) -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    async with Runtime(session_manager=mgr) as rt:
        rt.register("assistant", ReActAgent("scripted:calls", [add]))
        events = await collect(rt.stream("assistant", Message.user("add(a=2, b=3)"), user="alice"))
    history = await stored(mgr)
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]
    assert events == [
        Step(message=history[1]),
        Step(message=history[2]),
        Delta(text="Results: "),
        Delta(text="5"),
        Reply(message=history[3]),
    ]


@pytest.mark.asyncio
async def test_a_model_without_stream_gives_steps_and_the_reply(mgr: SessionManager) -> None:
    class Plain:
        async def complete(self, messages: Sequence[Message], tools: Sequence[Tool]) -> Message:
            return Message.assistant("whole")

    async with Runtime(session_manager=mgr) as rt:
        rt.register("assistant", ReActAgent(Plain()))
        events = await collect(rt.stream("assistant", Message.user("hi"), user="alice"))
    assert [e.type for e in events] == ["reply"]
    assert events[0] == Reply(message=(await stored(mgr))[1])


@pytest.mark.asyncio
async def test_a_stateless_streamed_turn(mgr: SessionManager) -> None:
    async with Runtime(session_manager=mgr) as rt:
        rt.register("echo", ReActAgent("scripted:echo"), session_mode="disabled")
        events = await collect(rt.stream("echo", Message.user("hi there"), user="alice"))
    assert events[:-1] == [Delta(text="You "), Delta(text="said: "), Delta(text="hi "),
                           Delta(text="there")]  # fmt: skip
    assert isinstance(events[-1], Reply) and events[-1].message.seq is None
    assert (await mgr.list()).items == []


@pytest.mark.asyncio
async def test_openai_streams_text_and_assembles_tool_calls_over_sse(
    chat_server: ChatServer, mgr: SessionManager
) -> None:
    w = Weather()
    chat_server.queue(
        completion(
            "Let me check.",
            [
                call("call_a", "weather", '{"city": "Oslo"}'),
                call("call_b", "weather", '{"city": "Rome, Italy"}'),
            ],
        ),
        completion("Oslo 12°C, Rome 12°C."),
    )
    agent = ReActAgent("openai:test-model", [w.tool], base_url=chat_server.base_url)
    async with Runtime(session_manager=mgr) as rt:
        rt.register("assistant", agent)
        events = await collect(rt.stream("assistant", Message.user("Weather?"), user="alice"))
    history = await stored(mgr)
    assert [m.role for m in history] == ["user", "assistant", "tool", "tool", "assistant"]
    request = history[1]
    assert request.text == "Let me check."
    assert [(c.id, c.name, c.arguments) for c in request.tool_calls or []] == [
        ("call_a", "weather", {"city": "Oslo"}),
        ("call_b", "weather", {"city": "Rome, Italy"}),
    ]
    assert [h.text for h in history[2:4]] == ["12°C in Oslo", "12°C in Rome, Italy"]
    assert events == [
        Delta(text="Let "),
        Delta(text="me "),
        Delta(text="check."),
        Step(message=history[1]),
        Step(message=history[2]),
        Step(message=history[3]),
        Delta(text="Oslo "),
        Delta(text="12°C, "),
        Delta(text="Rome "),
        Delta(text="12°C."),
        Reply(message=history[4]),
    ]
    assert all(r["stream"] is True for r in chat_server.requests)
    # What the model is sent back is what it sent, assembled: the second request carries it.
    assert chat_server.requests[1]["messages"][1]["tool_calls"][1]["function"] == {
        "name": "weather",
        "arguments": '{"city": "Rome, Italy"}',
    }
    assert w.runs == 2


@pytest.mark.asyncio
async def test_the_first_delta_arrives_while_the_model_is_still_writing(
    chat_server: ChatServer, mgr: SessionManager
) -> None:
    hold = threading.Event()
    chat_server.queue(HTTPReply(completion("Hello there world").body, hold=hold))
    agent = ReActAgent("openai:test-model", base_url=chat_server.base_url)
    try:
        async with Runtime(session_manager=mgr) as rt:
            rt.register("assistant", agent)
            events = rt.stream("assistant", Message.user("hi"), user="alice")
            # The server sends nothing more until `hold` is set: this Delta was not buffered.
            assert await asyncio.wait_for(anext(events), 30) == Delta(text="Hello ")
            hold.set()
            rest = await collect(events)
    finally:
        hold.set()
    assert [e.type for e in rest] == ["delta", "delta", "reply"]
    assert isinstance(rest[-1], Reply) and rest[-1].message.text == "Hello there world"


@pytest.mark.asyncio
async def test_leaving_mid_answer_then_calling_again_resumes_without_rerunning_the_tool(
    chat_server: ChatServer, mgr: SessionManager
) -> None:
    w = Weather()
    hold = threading.Event()
    chat_server.queue(
        completion(None, [call("call_a", "weather", '{"city": "Oslo"}')]),
        HTTPReply(completion("It is 12°C in Oslo.").body, hold=hold),
    )
    agent = ReActAgent("openai:test-model", [w.tool], base_url=chat_server.base_url)
    message = Message.user("Weather in Oslo?")
    try:
        async with Runtime(session_manager=mgr) as rt:
            rt.register("assistant", agent)
            seen: list[Event] = []
            async for ev in rt.stream("assistant", message, user="alice"):
                seen.append(ev)
                if isinstance(ev, Delta):
                    break
            assert [e.type for e in seen] == ["step", "step", "delta"]
            hold.set()
            # Resumed: the model is asked again from the stored tool result.
            chat_server.queue(completion("It is 12°C in Oslo."))
            again = await collect(rt.stream("assistant", message, user="alice"))
    finally:
        hold.set()
    history = await stored(mgr)
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]
    assert [m.id for m in history].count(message.id) == 1
    assert w.runs == 1
    assert [e.type for e in again] == ["delta"] * 5 + ["reply"]
    assert again[-1] == Reply(message=history[3])
    third = chat_server.requests[2]["messages"]
    assert [m["role"] for m in third] == ["user", "assistant", "tool"]


@pytest.mark.asyncio
async def test_an_error_mid_stream_is_an_agent_error_and_the_turn_resumes(
    chat_server: ChatServer, mgr: SessionManager
) -> None:
    chat_server.queue(HTTPReply(completion("This will break").body, broken=True))
    agent = ReActAgent("openai:test-model", base_url=chat_server.base_url, max_retries=0)
    message = Message.user("hi")
    async with Runtime(session_manager=mgr) as rt:
        rt.register("assistant", agent)
        seen: list[Event] = []

        async def consume() -> None:
            async for ev in rt.stream("assistant", message, user="alice"):
                seen.append(ev)

        with pytest.raises(AgentError, match="the model crashed") as info:
            await consume()
        assert "test-model" in str(info.value)
        assert seen == [Delta(text="This ")]
        chat_server.queue(completion("Fine now."))
        out = await rt.call("assistant", message, user="alice")
    assert out.text == "Fine now."
    assert [m.text for m in await stored(mgr)] == ["hi", "Fine now."]


@pytest.mark.asyncio
async def test_call_streams_from_the_model_too(chat_server: ChatServer) -> None:
    model = OpenAIModel("test-model", base_url=chat_server.base_url)
    # Direct use of the agent (no runtime) asks for a whole reply; the runtime streams.
    chat_server.queue(completion("whole"))
    assert (await ReActAgent(model).execute(Message.user("hi"))).text == "whole"
    assert "stream" not in chat_server.requests[0]
    chat_server.queue(completion("streamed"))
    async with Runtime(session_manager="memory://") as rt:
        rt.register("assistant", ReActAgent(model))
        assert (await rt.call("assistant", Message.user("hi"), user="alice")).text == "streamed"
    assert chat_server.requests[1]["stream"] is True
