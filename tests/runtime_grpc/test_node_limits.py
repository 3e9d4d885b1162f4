"""A node's limits, on real node processes: an open health ``Watch`` does not hold a graceful
stop for the grace period, and a client that stops reading a stream holds the agent back
(bounded buffering) instead of the node piling up the turn's events in memory."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from aixgo import Message
from aixgo.session import SessionManager
from aixgo_runtime_grpc._pb import agent_pb2 as pb
from aixgo_runtime_grpc.wire import event_from_wire, to_wire
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .conftest import NodeFactory
from .nodes import Node

pytestmark = pytest.mark.asyncio

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_an_open_health_watch_does_not_hold_a_graceful_stop(nodes: NodeFactory) -> None:
    (node,) = nodes("memory://", args=["--insecure", "--grace", "600"])
    async with grpc.aio.insecure_channel(node.address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == SERVING
        # terminate() waits at most 60 s for the process: before, the open watch kept the
        # node running for all of its 600 s of grace.
        assert await asyncio.to_thread(node.terminate) == 0
        statuses = []
        while (update := await watch.read()) is not grpc.aio.EOF:
            statuses.append(update.status)
        assert statuses == [NOT_SERVING]
        assert await watch.code() is grpc.StatusCode.OK


@pytest.fixture
def echo_node(tmp_path: Path, tool_log: Path) -> Iterator[Node]:
    """A node serving ``echo`` (scripted:echo, inputs up to 4 MB) on a file:// store the
    test reads too."""
    config = tmp_path / "echo.yaml"
    config.write_text(yaml.safe_dump({
        "session": f"file://{tmp_path / 'store'}",
        "agents": [{"name": "echo", "role": "react",
                    "options": {"model": "scripted:echo", "max_input_chars": 4_000_000}}],
    }))  # fmt: skip
    node = Node(config, ["--insecure"], tool_log).start()
    yield node
    node.close()


async def test_a_client_that_stops_reading_holds_the_agent_back(
    echo_node: Node, tmp_path: Path
) -> None:
    node, store = echo_node, f"file://{tmp_path / 'store'}"
    # scripted:echo streams its reply word by word: 2,000 deltas of 1 kB, far more than the
    # node's buffer and the connection's flow-control window (BDP probing off) hold.
    text = " ".join(f"{i:04d}" + "w" * 995 for i in range(2000))
    request = pb.CallRequest(agent="echo", message=to_wire(Message.user(text)), user="slow")
    options = [("grpc.http2.bdp_probe", 0), ("grpc.max_send_message_length", 8 << 20),
               ("grpc.max_receive_message_length", 8 << 20)]  # fmt: skip

    async def stored() -> list[str]:
        async with SessionManager(store) as mgr:
            page = await mgr.list(user_id="slow")
            if not page.items:
                return []
            return [m.role for m in await (await mgr.get(page.items[0].id)).get_messages()]

    async with grpc.aio.insecure_channel(node.address, options=options) as channel:
        call = channel.unary_stream("/aixgo.v1.AgentService/Stream",
                                    request_serializer=pb.CallRequest.SerializeToString,
                                    response_deserializer=pb.Event.FromString)(request)  # fmt: skip
        first = await call.read()
        assert first.WhichOneof("event") == "delta"
        # The client reads nothing more: the agent cannot finish its turn, so its reply is
        # never stored. (Before, the node took every event into memory, and the reply was
        # stored in well under a second.)
        for _ in range(50):
            roles = await stored()
            assert roles == ["user"], roles
            await asyncio.sleep(0.1)
        events = [first]
        while (event := await call.read()) is not grpc.aio.EOF:
            events.append(event)
        assert await call.code() is grpc.StatusCode.OK
    parsed = [event_from_wire(e) for e in events]
    deltas = "".join(e.text for e in parsed if e.type == "delta")
    assert deltas == "You said: " + text
    assert parsed[-1].type == "reply" and parsed[-1].message.text == "You said: " + text
    assert await stored() == ["user", "assistant"]
