"""The OpenAI-compatible provider against a real local HTTP server (no patched client):
tool calls, retries on 429/5xx, errors, timeouts, malformed arguments."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aixgo import Message, Runtime
from aixgo.errors import AgentError, ConfigError
from aixgo.session import SessionManager
from aixgo_agent_react import ModelError, OpenAIModel, ReActAgent, tool
from aixgo_agent_react.agent import TOOL_ERROR

from .conftest import ChatServer, Reply, call, completion, error


@tool
def weather(city: str) -> str:
    """Today's weather in a city."""
    return f"12°C in {city}"


@pytest_asyncio.fixture
async def model(chat_server: ChatServer) -> AsyncIterator[OpenAIModel]:
    m = OpenAIModel("test-model", base_url=chat_server.base_url, api_key="sk-secret", max_retries=3)
    try:
        yield m
    finally:
        await m.aclose()


@pytest.mark.asyncio
async def test_a_tool_calling_turn_over_http(chat_server: ChatServer, mgr: SessionManager) -> None:
    chat_server.queue(
        completion(None, [call("call_a", "weather", '{"city": "Oslo"}')]),
        completion("It is 12°C in Oslo."),
    )
    agent = ReActAgent(
        "openai:test-model",
        [weather],
        system_prompt="Be brief.",
        base_url=chat_server.base_url,
        api_key="test",
        temperature=0,
    )
    async with Runtime(session_manager=mgr) as rt:
        rt.register("assistant", agent)
        out = await rt.call("assistant", Message.user("Weather in Oslo?"), user="alice")
    assert out.text == "It is 12°C in Oslo."
    first, second = chat_server.requests
    assert first["model"] == "test-model" and first["temperature"] == 0
    assert first["tools"] == [weather.spec()]
    assert first["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo?"},
    ]
    assert second["messages"][2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [call("call_a", "weather", '{"city": "Oslo"}')],
        },
        {"role": "tool", "content": "12°C in Oslo", "tool_call_id": "call_a"},
    ]
    assert chat_server.headers[0]["Authorization"] == "Bearer test"
    (info,) = (await mgr.list()).items
    stored = await (await mgr.get(info.id)).get_messages()
    assert [m.role for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert stored[1].tool_calls is not None and stored[1].tool_calls[0].id == "call_a"


@pytest.mark.asyncio
async def test_429_and_5xx_are_retried(chat_server: ChatServer, model: OpenAIModel) -> None:
    fast = {"retry-after-ms": "10"}
    chat_server.queue(
        error(429, "slow down", **fast), error(503, "busy", **fast), completion("finally")
    )
    reply = await model.complete([Message.user("hi")], [])
    assert reply.text == "finally"
    assert len(chat_server.requests) == 3


@pytest.mark.asyncio
async def test_errors_that_remain_are_model_errors(
    chat_server: ChatServer, model: OpenAIModel, mgr: SessionManager
) -> None:
    fast = {"retry-after-ms": "10"}
    chat_server.queue(*[error(500, "kaput", **fast) for _ in range(4)])
    with pytest.raises(ModelError, match="HTTP 500: kaput") as info:
        await model.complete([Message.user("hi")], [])
    assert "test-model" in str(info.value) and "sk-secret" not in str(info.value)
    assert len(chat_server.requests) == 4  # 1 + max_retries
    chat_server.queue(error(400, "bad request: no such model"))
    with pytest.raises(ModelError, match="HTTP 400: bad request"):
        await model.complete([Message.user("hi")], [])
    assert len(chat_server.requests) == 5  # a 400 is not retried
    # Through the runtime: an AgentError naming the session; the input stays for a retry.
    chat_server.queue(error(401, "invalid key"))
    agent = ReActAgent(model, [])
    async with Runtime(session_manager=mgr) as rt:
        rt.register("assistant", agent)
        with pytest.raises(AgentError, match="HTTP 401") as failed:
            await rt.call("assistant", Message.user("hi"), user="alice")
        assert failed.value.session_id is not None


@pytest.mark.asyncio
async def test_a_slow_reply_times_out(chat_server: ChatServer) -> None:
    chat_server.queue(Reply(completion("late").body, delay=3))
    m = OpenAIModel("test-model", base_url=chat_server.base_url, timeout=0.3, max_retries=0)
    try:
        with pytest.raises(ModelError, match="did not answer in time"):  # the reply takes 3 s
            await m.complete([Message.user("hi")], [])
    finally:
        await m.aclose()


@pytest.mark.asyncio
async def test_malformed_arguments_become_a_tool_error(
    chat_server: ChatServer, model: OpenAIModel
) -> None:
    chat_server.queue(
        completion(
            "Let me check.",
            [call("c1", "weather", "{city: Oslo"), call("c1", "weather", '{"city": "Rome"}')],
        ),
        completion("Sorry, Rome is 12°C."),
    )
    agent = ReActAgent(model, [weather])
    out = await agent.execute(Message.user("weather?"))
    assert out.text == "Sorry, Rome is 12°C."
    sent = chat_server.requests[1]["messages"]
    request, bad, good = sent[1], sent[2], sent[3]
    ids = [c["id"] for c in request["tool_calls"]]
    assert ids[0] == "c1" and ids[1] != "c1"  # a repeated id is replaced, never shared
    assert request["content"] == "Let me check."
    assert request["tool_calls"][0]["function"]["arguments"] == "{city: Oslo"  # as it was sent
    assert bad["tool_call_id"] == "c1"
    assert bad["content"].startswith("error: the arguments for tool 'weather' are not a JSON")
    assert good == {"role": "tool", "content": "12°C in Rome", "tool_call_id": ids[1]}
    assert TOOL_ERROR  # the stored message is marked (see test_agent)


def test_configuration_errors_are_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIModel("gpt-4o-mini")
    with pytest.raises(ConfigError, match="needs a provider prefix"):
        ReActAgent("gpt-4o-mini")
    with pytest.raises(ConfigError, match="no model provider 'nope'"):
        ReActAgent("nope:x")
    with pytest.raises(ConfigError, match="no scripted policy"):
        ReActAgent("scripted:whatever")
