"""A session read through a node (``RemoteAgent.tail``, behind ``aixgo web``'s history route)
has a time limit: a node that stops answering (a real ``aixgo serve`` process, SIGSTOPped)
fails the read with a typed :class:`BackendTimeout` instead of holding the caller."""

from __future__ import annotations

import asyncio
import signal

import pytest
from aixgo import Message, Runtime
from aixgo.errors import BackendTimeout, ConfigError
from aixgo.events import SessionOpened
from aixgo_runtime_grpc import ClientTLS, RemoteAgent, build_remote

from .certs import Certs
from .conftest import NodeFactory, tls_args


@pytest.mark.asyncio
async def test_a_stopped_node_fails_tail_with_backend_timeout_and_recovers(
    nodes: NodeFactory, certs: Certs
) -> None:
    (node,) = nodes("memory://", args=tls_args(certs))
    tls = ClientTLS.from_files(certs.ca, certs.client.cert, certs.client.key)
    agent = RemoteAgent(f"grpcs://{node.address}", agent="echo", tls=tls, read_timeout=1.0)
    rt = Runtime(session_manager="memory://", timeout=60.0)
    rt.register("echo", agent)
    async with rt:
        events = [e async for e in rt.stream("echo", Message.user("hi"), user="alice",
                                             session_event=True)]  # fmt: skip
        sid = next(e.session_id for e in events if isinstance(e, SessionOpened))
        assert [m.text for m in await agent.tail(sid, user="alice")] == ["hi", "You said: hi"]
        assert node.proc is not None
        node.proc.send_signal(signal.SIGSTOP)
        try:
            # The guard only keeps a broken limit from hanging the test run.
            async with asyncio.timeout(60):
                with pytest.raises(BackendTimeout, match=r"within 1\.0 s"):
                    await agent.tail(sid, user="alice")  # read_timeout
                with pytest.raises(BackendTimeout, match=r"within 0\.5 s"):
                    await agent.tail(sid, user="alice", last=1, read_timeout=0.5)
        finally:
            node.proc.send_signal(signal.SIGCONT)
        # The node answers again, through the same channel.
        assert [m.text for m in await agent.tail(sid, user="alice", last=1)] == ["You said: hi"]


def test_read_timeout_is_an_option_checked_up_front() -> None:
    built = build_remote(url="grpc://127.0.0.1:1", agent="echo", insecure=True, read_timeout=2.5)
    assert built.read_timeout == 2.5
    assert build_remote(url="grpc://127.0.0.1:1", agent="echo", insecure=True,
                        read_timeout=None).read_timeout is None  # fmt: skip
    assert RemoteAgent("grpc://127.0.0.1:1", agent="echo", insecure=True).read_timeout == 10.0
    for bad in (0, -1.0, float("nan"), float("inf"), 86_401, "5", True, [1], "\x00" * 10_000):
        with pytest.raises(ConfigError, match="read_timeout"):
            RemoteAgent("grpc://127.0.0.1:1", agent="echo", insecure=True, read_timeout=bad)
    agent = RemoteAgent("grpc://127.0.0.1:1", agent="echo", insecure=True)
    with pytest.raises(ConfigError, match="read_timeout"):
        asyncio.run(agent.tail("s1", read_timeout=float("inf")))
    for wrong in (0, -1, 2.5, "3", True, None.__class__):
        with pytest.raises(ConfigError, match="attempts"):
            RemoteAgent("grpc://127.0.0.1:1", agent="echo", insecure=True, attempts=wrong)
