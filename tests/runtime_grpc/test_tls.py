"""Security by default, on real node processes: TLS always verifies the node; with
--client-ca a client without a certificate that CA signed is refused before any agent code
runs; plaintext only with --insecure, which warns. Health checking per agent."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc
import pytest
import yaml
from aixgo import Message, Runtime
from aixgo_runtime_grpc import (
    AgentServer,
    ClientTLS,
    NodeUnavailable,
    PermissionDenied,
    RemoteAgent,
    ServerTLS,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.services import wait_until_ready

from .certs import Certs
from .conftest import NodeFactory, tls_args, tool_lines
from .nodes import Node

pytestmark = pytest.mark.asyncio


def _client(address: str, **tls: Path | None) -> Runtime:
    rt = Runtime(session_manager="memory://")
    files = {k: v for k, v in tls.items() if v is not None}
    agent = RemoteAgent(f"grpcs://{address}", agent="assistant",
                        tls=ClientTLS.from_files(**files), attempts=1)  # type: ignore[arg-type]  # fmt: skip
    rt.register("assistant", agent)
    return rt


async def _mark(rt: Runtime, tag: str) -> str:
    async with rt:
        out = await rt.call("assistant", Message.user(f'mark(tag="{tag}")'), user="alice")
    return out.text


async def test_mutual_tls_accepts_a_client_the_ca_signed(mtls_node: Node, certs: Certs) -> None:
    rt = _client(mtls_node.address, ca_file=certs.ca, cert_file=certs.client.cert,
                 key_file=certs.client.key)  # fmt: skip
    assert await _mark(rt, "ok") == "Results: marked ok"
    assert len(tool_lines(mtls_node.tool_log, "mark ok")) == 1


@pytest.mark.parametrize("who", ["no certificate", "wrong CA", "expired"])
async def test_mutual_tls_refuses_before_any_agent_code_runs(
    mtls_node: Node, certs: Certs, who: str
) -> None:
    node = mtls_node
    pair = {"no certificate": None, "wrong CA": certs.wrong_ca_client,
            "expired": certs.expired}[who]  # fmt: skip
    rt = _client(node.address, ca_file=certs.ca, cert_file=pair and pair.cert,
                 key_file=pair and pair.key)  # fmt: skip
    tag = "refused-" + who.replace(" ", "-")
    with pytest.raises(NodeUnavailable):
        await _mark(rt, tag)
    assert tool_lines(node.tool_log, f"mark {tag}") == []


async def test_the_client_refuses_a_node_its_ca_did_not_sign(
    nodes: NodeFactory, certs: Certs, tool_log: Path
) -> None:
    args = ["--cert", str(certs.wrong_ca_server.cert), "--key", str(certs.wrong_ca_server.key)]
    (node,) = nodes("memory://", args=args)
    rt = _client(node.address, ca_file=certs.ca)
    with pytest.raises(NodeUnavailable):
        await _mark(rt, "never")
    assert tool_lines(tool_log, "mark") == []


async def test_server_only_tls(nodes: NodeFactory, certs: Certs) -> None:
    (node,) = nodes("memory://", args=tls_args(certs, mutual=False))
    assert await _mark(_client(node.address, ca_file=certs.ca), "tls") == "Results: marked tls"


async def test_insecure_serves_plaintext_and_warns(nodes: NodeFactory) -> None:
    (node,) = nodes("memory://", args=["--insecure"])
    assert node.proc is not None
    # Logged before the node serves, but read from its stderr by a thread that may lag.
    warned = lambda: any("PLAINTEXT" in line and "WARNING" in line for line in node.stderr)  # noqa: E731
    wait_until_ready(node.proc, warned, what="the warning")
    rt = Runtime(session_manager="memory://")
    rt.register("assistant", RemoteAgent(f"grpc://{node.address}", agent="assistant",
                                         insecure=True))  # fmt: skip
    assert await _mark(rt, "plain") == "Results: marked plain"


async def test_health_per_agent(nodes: NodeFactory, certs: Certs) -> None:
    (node,) = nodes("memory://", args=tls_args(certs))
    creds = ClientTLS.from_files(certs.ca, certs.client.cert, certs.client.key).credentials()
    async with grpc.aio.secure_channel(node.address, creds) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "assistant", "echo"):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Check(health_pb2.HealthCheckRequest(service="nobody"))
        assert err.value.code() is grpc.StatusCode.NOT_FOUND
    assert node.terminate() == 0


@pytest.mark.parametrize(("allowed", "ok"), [("client-a", True), ("someone-else", False)])
async def test_an_agents_allow_list_names_client_identities(
    certs: Certs, allowed: str, ok: bool
) -> None:
    rt = Runtime(session_manager="memory://")
    rt.register("echo", _Echo())
    async with rt:
        server = AgentServer(rt, "127.0.0.1:0", allow={"echo": [allowed]},
                             tls=ServerTLS.from_files(certs.server.cert, certs.server.key,
                                                      certs.ca))  # fmt: skip
        port = await server.start()
        client = Runtime(session_manager="memory://")
        tls = ClientTLS.from_files(certs.ca, certs.client.cert, certs.client.key)
        client.register("echo", RemoteAgent(f"grpcs://127.0.0.1:{port}", agent="echo", tls=tls))
        try:
            async with client:
                if ok:
                    out = await client.call("echo", Message.user("hi"), user="u")
                    assert out.text == "hi"
                else:
                    with pytest.raises(PermissionDenied, match="not allowed"):
                        await client.call("echo", Message.user("hi"), user="u")
                    assert (await rt.session_manager.list()).items == []
        finally:
            await server.stop(1)


class _Echo:
    async def execute(self, input: Message) -> Message:
        return Message.assistant(input.text)


async def test_aixgo_chat_talks_to_a_remote_agent(
    mtls_node: Node, certs: Certs, tmp_path: Path
) -> None:
    config = tmp_path / "client.yaml"
    options = {"url": f"grpcs://{mtls_node.address}", "agent": "echo", "ca_file": str(certs.ca),
               "cert_file": str(certs.client.cert), "key_file": str(certs.client.key)}  # fmt: skip
    config.write_text(yaml.safe_dump({
        "session": "memory://",
        "agents": [{"name": "assistant", "role": "remote", "options": options}],
    }))  # fmt: skip
    aixgo = Path(sys.executable).parent / "aixgo"
    for line in ("hello", "again"):
        proc = await asyncio.create_subprocess_exec(
            str(aixgo), "chat", "assistant", "--config", str(config), "--user", "chatty",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate(f"{line}\n/quit\n".encode())
        assert proc.returncode == 0, err.decode()
        assert f"assistant> You said: {line}" in out.decode()
    # Both runs continued the user's latest session on the node: a third turn is its 3rd.
    tls = ClientTLS.from_files(certs.ca, certs.client.cert, certs.client.key)
    agent = RemoteAgent(f"grpcs://{mtls_node.address}", agent="echo", tls=tls)
    try:
        reply = await agent.execute_hosted(Message.user("third"), user="chatty", session=None,
                                           time_left=30)  # fmt: skip
    finally:
        await agent.stop()
    assert reply.seq == 6


async def test_serve_allow_limits_an_agent_to_client_identities(
    mtls_node: Node, certs: Certs
) -> None:
    tls = ClientTLS.from_files(certs.ca, certs.client.cert, certs.client.key)
    url = f"grpcs://{mtls_node.address}"
    guarded = RemoteAgent(url, agent="guarded", tls=tls)
    echo = RemoteAgent(url, agent="echo", tls=tls)  # allowed: client-a is on its list
    try:
        with pytest.raises(PermissionDenied, match="not allowed to call agent 'guarded'"):
            await guarded.execute_hosted(Message.user("hi"), user="u", session=None,
                                         time_left=30)  # fmt: skip
        out = await echo.execute_hosted(Message.user("hi"), user="u", session=None, time_left=30)
        assert out.text == "You said: hi"
    finally:
        await guarded.stop()
        await echo.stop()
