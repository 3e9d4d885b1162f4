"""Several real nodes (``aixgo serve`` processes, mutual TLS) on one shared store, on the real
Redis and PostgreSQL: sessions move between nodes, each turn is stored once whichever node
runs it, a node killed mid-turn is replaced by another with the same call, concurrent turns
follow the store-enforced policy, deadlines and cancellation reach the agent, and a node
stopping gracefully finishes the turn it is running."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import grpc
import pytest
from aixgo import Message, Runtime
from aixgo.errors import CallTimeout, ConflictError
from aixgo.events import Reply, Step
from aixgo.session import SessionManager, open_backend
from aixgo_runtime_grpc import ClientTLS, NodeUnavailable, RemoteAgent
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .certs import Certs
from .conftest import NodeFactory, tls_args, tool_lines
from .nodes import Node

pytestmark = pytest.mark.asyncio


def _client(certs: Certs, *targets: Node, timeout: float | None = 60.0, **kw: object) -> Runtime:
    rt = Runtime(session_manager="memory://", timeout=timeout)
    tls = ClientTLS.from_files(certs.ca, certs.client.cert, certs.client.key)
    urls = [f"grpcs://{n.address}" for n in targets]
    rt.register("assistant", RemoteAgent(urls, agent="assistant", tls=tls, **kw))  # type: ignore[arg-type]
    return rt


def _remote(rt: Runtime) -> RemoteAgent:
    agent = rt.get("assistant")
    assert isinstance(agent, RemoteAgent)
    return agent


def _assert_each_stored_once(history: list[Message]) -> None:
    ids = [m.id for m in history]
    assert len(ids) == len(set(ids)), "a message was stored twice"
    assert [m.seq for m in history] == list(range(1, len(history) + 1))


async def test_a_session_moves_between_nodes_with_full_history(
    nodes: NodeFactory, certs: Certs, shared_store: str, tool_log: Path
) -> None:
    a, b = nodes(shared_store, 2, args=tls_args(certs))
    async with _client(certs, a) as on_a, _client(certs, b) as on_b:
        first = await on_a.call("assistant", Message.user('mark(tag="a1")'), user="alice")
        sid = await _session_id(shared_store, "alice")
        second = await on_b.call_with_session("assistant", Message.user('mark(tag="b1")'), sid)
        third = await on_a.call("assistant", Message.user('mark(tag="a2")'), user="alice")
        history = await _remote(on_b).tail(sid, user="alice")
    assert [m.text for m in history if m.role != "assistant" or not m.tool_calls] == [
        'mark(tag="a1")', "marked a1", "Results: marked a1",
        'mark(tag="b1")', "marked b1", "Results: marked b1",
        'mark(tag="a2")', "marked a2", "Results: marked a2",
    ]  # fmt: skip
    assert len(history) == 12  # each turn: input, tool request, tool result, reply
    assert [first.seq, second.seq, third.seq] == [4, 8, 12]
    _assert_each_stored_once(history)
    pids = {line.rsplit("pid=", 1)[1] for line in tool_lines(tool_log, "mark")}
    assert len(pids) == 2  # both nodes ran turns
    assert Counter(line.split()[1] for line in tool_lines(tool_log, "mark")) == {
        "a1": 1, "b1": 1, "a2": 1}  # fmt: skip


async def _session_id(url: str, user: str) -> str:
    """The user's session with the assistant, read from the shared store itself."""
    async with SessionManager(open_backend(url)) as mgr:
        page = await mgr.list(agent="assistant", user_id=user)
    (info,) = page.items
    return info.id


async def _history(url: str, session_id: str) -> list[Message]:
    async with SessionManager(open_backend(url)) as mgr:
        return await (await mgr.get(session_id)).get_messages()


def _release(tool_log: Path) -> None:
    """Let the ``hold`` tools finish."""
    Path(f"{tool_log}.release").touch()


async def _until(check: object, what: str, limit: float = 60.0) -> None:
    """Poll ``check()`` until it is true (a progress wait, not a speed assertion)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not check():  # type: ignore[operator]
        if loop.time() > end:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("mode", ["call", "stream"])
async def test_a_node_killed_mid_turn_is_replaced_by_another_with_the_same_call(
    nodes: NodeFactory, certs: Certs, shared_store: str, tool_log: Path, mode: str
) -> None:
    a, b = nodes(shared_store, 2, args=tls_args(certs), lease_ttl=1.0)
    assert a.proc is not None and b.proc is not None
    msg = Message.user('mark(tag="k1") hold(tag="k2")')
    steps: list[Message] = []

    async def run(rt: Runtime) -> Message:
        if mode == "call":
            return await rt.call("assistant", msg, user="kim")
        reply = None
        async for event in rt.stream("assistant", msg, user="kim"):
            if isinstance(event, Step):
                steps.append(event.message)
            elif isinstance(event, Reply):
                reply = event.message
        assert reply is not None
        return reply

    async with _client(certs, a, b) as rt:  # a first: round-robin starts there
        task = asyncio.create_task(run(rt))
        await _until(lambda: tool_lines(tool_log, "hold-start"), "the node to start hold")
        assert f"pid={a.proc.pid}" in tool_lines(tool_log, "hold-start")[0]
        a.kill()  # SIGKILL, mid-turn: the first tool finished and was stored, hold runs
        _release(tool_log)
        reply = await task
    history = await _history(shared_store, await _session_id(shared_store, "kim"))
    _assert_each_stored_once(history)
    assert [m.role for m in history] == ["user", "assistant", "tool", "tool", "assistant"]
    assert history[0].id == msg.id
    assert [m.text for m in history[2:]] == ["marked k1", "held k2", "Results: marked k1; held k2"]
    assert reply == history[-1]
    assert len(tool_lines(tool_log, "mark k1")) == 1  # a finished tool is not run again
    (ended,) = tool_lines(tool_log, "hold-end k2")
    assert f"pid={b.proc.pid}" in ended
    # Steps the caller saw (from an agent that streams them) are stored ones, each once, in
    # order, though the turn moved to another node.
    passed = {m.id for m in steps}
    assert steps == [m for m in history[1:4] if m.id in passed]
    if mode == "stream":  # the ReAct agent streams: every step arrived, from either node
        assert steps == history[1:4]


@pytest.mark.parametrize("policy", ["reject", "queue"])
async def test_two_clients_on_two_nodes_drive_one_session(
    nodes: NodeFactory, certs: Certs, shared_store: str, tool_log: Path, policy: str
) -> None:
    a, b = nodes(shared_store, 2, args=tls_args(certs), policy=policy)
    first = Message.user('hold(tag="c1")')
    second = Message.user('mark(tag="c2")')
    async with _client(certs, a, attempts=1) as one, _client(certs, b, attempts=1) as two:
        running = asyncio.create_task(one.call("assistant", first, user="carol"))
        await _until(lambda: tool_lines(tool_log, "hold-start"), "the first turn's tool")
        if policy == "reject":
            with pytest.raises(ConflictError, match="reject"):
                await two.call("assistant", second, user="carol")
            _release(tool_log)
            await running
        else:
            waiting = asyncio.create_task(two.call("assistant", second, user="carol"))
            await asyncio.sleep(0.5)
            assert not waiting.done()  # queued behind the running turn
            _release(tool_log)
            await running
            await waiting
    history = await _history(shared_store, await _session_id(shared_store, "carol"))
    _assert_each_stored_once(history)
    turn = ["user", "assistant", "tool", "assistant"]
    if policy == "reject":
        assert [m.role for m in history] == turn
        assert tool_lines(tool_log, "mark c2") == []  # refused before anything ran or was stored
    else:
        assert [m.role for m in history] == turn + turn  # one after the other, not interleaved
        assert [history[0].id, history[4].id] == [first.id, second.id]


async def test_the_callers_deadline_cancels_the_agent(mtls_node: Node, certs: Certs) -> None:
    async with _client(certs, mtls_node, timeout=1.0) as rt:
        with pytest.raises(CallTimeout):
            await rt.call("assistant", Message.user('nap(seconds=30, tag="d")'), user="dora")
    log = mtls_node.tool_log
    await _until(lambda: tool_lines(log, "nap-cancelled d"), "the node to cancel the tool")
    assert tool_lines(log, "nap-end d") == []


async def test_cancelling_the_caller_cancels_the_agent(mtls_node: Node, certs: Certs) -> None:
    log = mtls_node.tool_log
    async with _client(certs, mtls_node) as rt:
        task = asyncio.create_task(
            rt.call("assistant", Message.user('nap(seconds=30, tag="x")'), user="xena")
        )
        await _until(lambda: tool_lines(log, "nap-start x"), "the tool to start")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await _until(lambda: tool_lines(log, "nap-cancelled x"), "the node to cancel the tool")
    assert tool_lines(log, "nap-end x") == []


async def test_graceful_shutdown_finishes_the_running_turn(
    nodes: NodeFactory, certs: Certs, tool_log: Path
) -> None:
    (node,) = nodes("memory://", args=tls_args(certs))
    assert node.proc is not None
    creds = ClientTLS.from_files(certs.ca, certs.client.cert, certs.client.key).credentials()
    async with (
        _client(certs, node, attempts=1) as rt,
        grpc.aio.secure_channel(node.address, creds) as channel,
    ):
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="assistant")
        )
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        task = asyncio.create_task(
            rt.call("assistant", Message.user('nap(seconds=2, tag="g")'), user="gus")
        )
        await _until(lambda: tool_lines(tool_log, "nap-start g"), "the tool to start")
        node.proc.terminate()  # SIGTERM: graceful
        update = await watch.read()
        assert update.status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(NodeUnavailable):
            await rt.call("assistant", Message.user("late"), user="gus")
        reply = await task
        assert reply.text == "Results: slept 2.0"
    assert node.proc.wait(timeout=60) == 0
    assert len(tool_lines(tool_log, "nap-end g")) == 1
