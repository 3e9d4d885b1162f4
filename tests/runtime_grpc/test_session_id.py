"""A remote caller learns which session its turn ran in: a call that gave only ``user`` can
be continued by session id through another node (real ``aixgo serve`` processes, mutual TLS,
one shared store on the real Redis and PostgreSQL)."""

from __future__ import annotations

import grpc
import pytest
from aixgo import Message, Runtime
from aixgo.events import Reply, SessionOpened
from aixgo.session import SessionManager, open_backend
from aixgo_runtime_grpc import ClientTLS, RemoteAgent
from aixgo_runtime_grpc._pb import agent_pb2 as pb
from aixgo_runtime_grpc.server import SERVICE
from aixgo_runtime_grpc.wire import from_wire, to_wire

from .certs import Certs
from .conftest import NodeFactory, tls_args
from .nodes import Node

pytestmark = pytest.mark.asyncio


def _client(certs: Certs, node: Node) -> Runtime:
    rt = Runtime(session_manager="memory://", timeout=60.0)
    tls = ClientTLS.from_files(certs.ca, certs.client.cert, certs.client.key)
    rt.register("assistant", RemoteAgent(f"grpcs://{node.address}", agent="assistant", tls=tls))
    return rt


async def _sessions(url: str, user: str) -> list[str]:
    async with SessionManager(open_backend(url)) as mgr:
        page = await mgr.list(agent="assistant", user_id=user)
    return [info.id for info in page.items]


async def test_a_session_started_by_user_on_one_node_continues_by_id_on_another(
    nodes: NodeFactory, certs: Certs, shared_store: str
) -> None:
    a, b = nodes(shared_store, 2, args=tls_args(certs))
    async with _client(certs, a) as on_a, _client(certs, b) as on_b:
        first = Message.user('mark(tag="a1")')
        events = [e async for e in on_a.stream("assistant", first, user="alice",
                                               session_event=True)]  # fmt: skip
        opened = events[0]
        assert isinstance(opened, SessionOpened)
        assert [e for e in events if isinstance(e, SessionOpened)] == [opened]  # once, first
        assert isinstance(events[-1], Reply)
        assert await _sessions(shared_store, "alice") == [opened.session_id]

        second = await on_b.call_with_session(
            "assistant", Message.user('mark(tag="b1")'), opened.session_id
        )
        # Without asking, a stream is what it always was: no session event.
        plain = [e async for e in on_b.stream("assistant", Message.user("hello"),
                                              session=opened.session_id)]  # fmt: skip
        agent = on_b.get("assistant")
        assert isinstance(agent, RemoteAgent)
        history = await agent.tail(opened.session_id, user="alice")
    assert not any(isinstance(e, SessionOpened) for e in plain)
    assert second.seq == 8
    texts = [m.text for m in history if m.role != "assistant" or not m.tool_calls]
    assert texts == [
        'mark(tag="a1")', "marked a1", "Results: marked a1",
        'mark(tag="b1")', "marked b1", "Results: marked b1",
        "hello", plain[-1].message.text,
    ]  # fmt: skip
    assert history[0].id == first.id
    assert [m.seq for m in history] == list(range(1, len(history) + 1))


async def test_the_unary_reply_names_the_session_any_grpc_client_can_continue(
    nodes: NodeFactory, certs: Certs, redis_store: str
) -> None:
    a, b = nodes(redis_store, 2, args=tls_args(certs))
    creds = grpc.ssl_channel_credentials(
        certs.ca.read_bytes(), certs.client.key.read_bytes(), certs.client.cert.read_bytes()
    )

    def stub(channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable:
        return channel.unary_unary(f"/{SERVICE}/Call",
                                   request_serializer=pb.CallRequest.SerializeToString,
                                   response_deserializer=pb.CallResponse.FromString)  # fmt: skip

    async with (
        grpc.aio.secure_channel(a.address, creds) as ch_a,
        grpc.aio.secure_channel(b.address, creds) as ch_b,
    ):
        hi = to_wire(Message.user("hi"))
        started: pb.CallResponse = await stub(ch_a)(
            pb.CallRequest(agent="assistant", message=hi, user="bob"), timeout=60
        )
        assert started.HasField("session")
        assert await _sessions(redis_store, "bob") == [started.session]
        more = to_wire(Message.user("more"))
        continued: pb.CallResponse = await stub(ch_b)(
            pb.CallRequest(agent="assistant", message=more, session=started.session,
                           user="bob"), timeout=60,
        )  # fmt: skip
        stateless: pb.CallResponse = await stub(ch_b)(
            pb.CallRequest(agent="assistant", message=to_wire(Message.user("x"))), timeout=60
        )
    assert continued.session == started.session
    assert from_wire(continued.reply).seq == 4
    assert not stateless.HasField("session")
    assert await _sessions(redis_store, "bob") == [started.session]
