"""The wire on an in-process node (plaintext on loopback): messages cross unchanged, every kind
of bad input gets its own gRPC status and changes nothing, and the committed generated code
is what protoc makes from the published proto."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from aixgo import Message, Runtime
from aixgo.errors import ConfigError, InvalidArgument, InvalidMessage, NotFoundError
from aixgo.events import Delta, Reply, Step
from aixgo.message import ToolCall
from aixgo.session import Session
from aixgo.session.codec import MAX_MESSAGE_BYTES
from aixgo_runtime_grpc import AgentServer, ClientTLS, RemoteAgent, ServerTLS, proto_path
from aixgo_runtime_grpc._codegen import main as codegen
from aixgo_runtime_grpc._pb import agent_pb2 as pb
from aixgo_runtime_grpc.server import MAX_WIRE_BYTES
from aixgo_runtime_grpc.wire import ERROR_KEY, from_wire, to_wire


class Echo:
    async def execute(self, input: Message) -> Message:
        return Message.assistant("echo: " + input.text, metadata={"n": 2**60 + 1})


def test_messages_cross_the_wire_unchanged() -> None:
    call = ToolCall(name="f", arguments={"big": 2**63 - 1, "x": 0.1, "s": "é\u2028"})
    for m in [
        Message.user("hi", metadata={"n": 2**60 + 1, "nested": {"a": [1, None, True]}}),
        Message.user([{"type": "text", "text": "a"}, {"type": "image", "url": "u"}], name="n"),
        Message.assistant(tool_calls=[call]),
        Message.assistant("", tool_calls=[]),
        Message.tool("42", tool_call_id="c1").model_copy(update={"seq": 7}),
        Message.system("s", created_at=datetime(2020, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)),
    ]:
        assert from_wire(to_wire(m)) == m


def test_a_malformed_message_is_a_typed_error() -> None:
    with pytest.raises(InvalidMessage, match="role"):
        from_wire(pb.Message(id="abc", role="robot", text="x"))
    with pytest.raises(InvalidMessage, match="metadata_json"):
        from_wire(pb.Message(id="abc", role="user", text="x", metadata_json="{nope"))


def test_generated_code_matches_a_fresh_protoc_run() -> None:
    assert codegen(["--check"]) == 0
    assert proto_path().read_text().startswith("// The wire contract")


def test_plaintext_needs_saying_so() -> None:
    with pytest.raises(ConfigError, match="insecure"):
        RemoteAgent("grpc://127.0.0.1:1", agent="a")
    with pytest.raises(ConfigError, match="grpcs://"):
        RemoteAgent("http://127.0.0.1:1", agent="a")


@pytest_asyncio.fixture
async def node() -> AsyncIterator[tuple[Runtime, str]]:
    rt = Runtime(session_manager="memory://")
    rt.register("echo", Echo())
    async with rt:
        server = AgentServer(rt, "127.0.0.1:0", insecure=True)
        port = await server.start()
        yield rt, f"127.0.0.1:{port}"
        await server.stop(1)


async def _raw(address: str, request: pb.CallRequest) -> grpc.aio.AioRpcError:
    async with grpc.aio.insecure_channel(
        address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as ch:
        call = ch.unary_unary("/aixgo.v1.AgentService/Call",
                              request_serializer=pb.CallRequest.SerializeToString,
                              response_deserializer=pb.CallResponse.FromString)  # fmt: skip
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(request)
    return err.value


def _error_name(err: grpc.aio.AioRpcError) -> str | None:
    return next((str(v) for k, v in (err.trailing_metadata() or ()) if k == ERROR_KEY), None)


async def _sessions(rt: Runtime) -> list[tuple[str, int]]:
    page = await rt.session_manager.list(limit=100)
    return [(i.id, i.message_count) for i in page.items]


@pytest.mark.asyncio
async def test_a_remote_call_returns_the_stored_reply(node: tuple[Runtime, str]) -> None:
    rt, address = node
    client = Runtime(session_manager="memory://")
    client.register("echo", RemoteAgent(f"grpc://{address}", agent="echo", insecure=True))
    async with client:
        out = await client.call("echo", Message.user("hi"), user="alice")
        s = await rt.session_manager.get_or_create("echo", "alice")
        again = await client.call_with_session("echo", Message.user("more"), s.id)
        tail = await client.get("echo").tail(s.id, user="alice", last=3)
        assert await _sessions(client) == []  # nothing stored client-side
    assert (out.text, out.seq, out.metadata["n"]) == ("echo: hi", 2, 2**60 + 1)
    assert again.seq == 4
    assert [m.text for m in tail] == ["echo: hi", "more", "echo: more"]
    assert tail == (await s.get_messages())[1:]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("request_", "code", "name"),
    [
        (pb.CallRequest(agent="nobody", message=to_wire(Message.user("x")), user="u"),
         grpc.StatusCode.NOT_FOUND, "AgentNotFound"),
        (pb.CallRequest(agent="echo", user="u"), grpc.StatusCode.INVALID_ARGUMENT,
         "InvalidMessage"),
        (pb.CallRequest(agent="echo", message=pb.Message(id="m1", role="robot"), user="u"),
         grpc.StatusCode.INVALID_ARGUMENT, "InvalidMessage"),
        (pb.CallRequest(agent="echo", message=to_wire(Message.user("x")), user="bad user\n"),
         grpc.StatusCode.INVALID_ARGUMENT, "InvalidIdentifier"),
        (pb.CallRequest(agent="echo", message=to_wire(Message.user("x")), session="../etc"),
         grpc.StatusCode.INVALID_ARGUMENT, "InvalidIdentifier"),
        (pb.CallRequest(agent="echo", message=to_wire(Message.user("x" * MAX_MESSAGE_BYTES)),
                        user="u"), grpc.StatusCode.RESOURCE_EXHAUSTED, "InvalidMessage"),
        (pb.CallRequest(agent="echo", message=to_wire(Message.user("x" * MAX_WIRE_BYTES)),
                        user="u"), grpc.StatusCode.RESOURCE_EXHAUSTED, None),
    ],
    ids=["unknown-agent", "no-message", "bad-role", "bad-user", "bad-session", "over-16MiB",
         "over-wire-limit"],
)  # fmt: skip
async def test_bad_input_gets_its_own_status_and_changes_nothing(
    node: tuple[Runtime, str], request_: pb.CallRequest, code: grpc.StatusCode, name: str | None
) -> None:
    rt, address = node
    await rt.call("echo", Message.user("before"), user="u")
    before = await _sessions(rt)
    err = await _raw(address, request_)
    assert err.code() is code, err.details()
    assert _error_name(err) == name
    assert await _sessions(rt) == before


@pytest.mark.asyncio
async def test_another_users_session_is_not_found_and_unchanged(
    node: tuple[Runtime, str],
) -> None:
    rt, address = node
    await rt.call("echo", Message.user("mine"), user="alice")
    s = await rt.session_manager.get_or_create("echo", "alice")
    err = await _raw(address, pb.CallRequest(agent="echo", message=to_wire(Message.user("x")),
                                              user="mallory", session=s.id))  # fmt: skip
    assert (err.code(), _error_name(err)) == (grpc.StatusCode.NOT_FOUND, "SessionNotFound")
    assert [m.text for m in await s.get_messages()] == ["mine", "echo: mine"]
    client = RemoteAgent(f"grpc://{address}", agent="echo", insecure=True)
    try:
        with pytest.raises(NotFoundError, match="does not exist"):
            await client.tail(s.id, user="mallory")
        with pytest.raises(NotFoundError):
            await client.execute_hosted(Message.user("x"), user="mallory", session=s.id,
                                        time_left=5)  # fmt: skip
    finally:
        await client.stop()


class Stepper:
    """Streams: stores a step in its session, says a few words, replies."""

    async def execute(self, input: Message) -> Message:
        return Message.assistant("done")

    async def stream_with_session(
        self, input: Message, session: Session | None
    ) -> AsyncIterator[Delta | Step | Message]:
        call = ToolCall(name="look", arguments={"q": input.text})
        request = Message.assistant(tool_calls=[call])
        if session is not None:
            request = await session.append_message(request)
        yield Step(message=request)
        for word in ("all ", "done"):
            yield Delta(text=word)
        yield Message.assistant("all done")


@pytest.mark.asyncio
async def test_rt_stream_on_a_remote_agent_is_the_nodes_stream() -> None:
    rt = Runtime(session_manager="memory://")
    rt.register("stepper", Stepper())
    async with rt:
        server = AgentServer(rt, "127.0.0.1:0", insecure=True)
        port = await server.start()
        client = Runtime(session_manager="memory://")
        client.register("stepper", RemoteAgent(f"grpc://127.0.0.1:{port}", agent="stepper",
                                               insecure=True))  # fmt: skip
        async with client:
            events = [e async for e in client.stream("stepper", Message.user("q"), user="u")]
            called = await client.call("stepper", Message.user("again"), user="u")
        await server.stop(1)
        s = await rt.session_manager.get_or_create("stepper", "u")
        history = await s.get_messages()
    assert [e.type for e in events] == ["step", "delta", "delta", "reply"]
    assert isinstance(events[0], Step) and isinstance(events[-1], Reply)
    assert events[0].message == history[1]
    assert events[-1].message == history[2]
    assert "".join(e.text for e in events if isinstance(e, Delta)) == "all done"
    assert called == history[-1]
    assert [m.role for m in history] == ["user", "assistant", "assistant"] * 2


def test_tls_errors_name_the_option_never_the_file(tmp_path: Path) -> None:
    key = tmp_path / "secret-name.key"
    key.write_text("SECRET-KEY-MATERIAL")
    with pytest.raises(ConfigError) as err:
        ServerTLS.from_files(key, key)
    assert "--cert" in str(err.value)
    assert "SECRET" not in str(err.value)
    assert "secret-name" not in str(err.value)
    with pytest.raises(ConfigError, match="cert_file and key_file go together"):
        ClientTLS.from_files(None, None, tmp_path / "missing.key")
    assert repr(ServerTLS(b"c", b"SECRET")) == "ServerTLS(mutual=False)"


@pytest.mark.asyncio
async def test_mesh_mode_binds_plaintext_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    rt = Runtime(session_manager="memory://")
    rt.register("echo", Echo())
    with pytest.raises(InvalidArgument, match="needs TLS"):
        AgentServer(rt, "127.0.0.1:0")
    async with rt:
        server = AgentServer(rt, "127.0.0.1:0", mesh=True)
        with caplog.at_level(logging.INFO, logger="aixgo.grpc"):
            port = await server.start()
        try:
            (record,) = [r for r in caplog.records if r.name == "aixgo.grpc"]
            assert record.levelno == logging.INFO
            assert f"127.0.0.1:{port} in plaintext" in record.getMessage()
            assert "sidecar" in record.getMessage()
            client = RemoteAgent(f"grpc://127.0.0.1:{port}", agent="echo", insecure=True)
            assert (await client.execute(Message.user("hi"))).text == "echo: hi"
            await client.stop()
        finally:
            await server.stop(1)
