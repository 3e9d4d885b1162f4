"""Hostile input to ``aixgo serve --allow AGENT=IDENTITY``: a malformed allow-list is a usage
error before the node binds; at run time a client whose certificate does not name an allowed
identity exactly (a NUL-truncated, prefixed, differently cased, look-alike or control-character
name) gets PERMISSION_DENIED before any agent code runs, and the node keeps serving."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aixgo import Message
from aixgo.errors import InvalidArgument
from aixgo.runtime import Runtime
from aixgo_runtime_grpc import AgentServer, ClientTLS, PermissionDenied, RemoteAgent, ServerTLS
from aixgo_runtime_grpc.identity import check_allow, peer_identities
from click.testing import CliRunner
from cryptography import x509

from .certs import Certs, issue
from .conftest import tls_args, tool_lines
from .nodes import Node, start_nodes

# Allowed identities of the node below: an ASCII name, a non-ASCII one and a URI SAN.
ALLOWED = ["client-a", "café", "spiffe://td/ns/caller"]


def _serve(certs: Certs, tmp_path: Path, *allow: str, mutual: bool = True) -> tuple[int, str]:
    from aixgo.cli import cli

    config = tmp_path / "node.yaml"
    config.write_text(
        "session: memory://\nagents:\n"
        + "".join(f"  - {{name: {name}, role: react, options: {{model: 'scripted:echo'}}}}\n"
                  for name in ("assistant", "echo"))
    )  # fmt: skip
    args = ["serve", "--config", str(config), "--listen", "127.0.0.1:0",
            *tls_args(certs, mutual=mutual)]  # fmt: skip
    for item in allow:
        args += ["--allow", item]
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ("assistant", "takes AGENT=IDENTITY"),
        ("=client-a", "takes AGENT=IDENTITY"),
        ("assistant=", "takes AGENT=IDENTITY"),
        ("assistant=client-a\x00", "control or invisible character '\\\\x00'"),
        ("assistant=client\x07a", "control or invisible character '\\\\x07'"),
        ("assistant=client-a\n", "control or invisible character '\\\\n'"),
        ("assistant=client\u200ba", "control or invisible character '\\\\u200b'"),
        ("assistant=client\u202ea", "control or invisible character '\\\\u202e'"),
        ("assistant=" + "a" * 5000, "5,000 characters long"),
        ("assistant= client-a", "white space"),
        ("assistant=*", "not as patterns"),
        ("assistant=*.example.com", "not as patterns"),
        ("assistant=CN=client-a", "without 'CN='"),
        ("assis\x07tant=client-a", "agent name"),
        ("asisstant=client-a", "names agent\\(s\\) 'asisstant' that .* does not serve"),
    ],
)
def test_a_malformed_allow_entry_is_a_usage_error(
    certs: Certs, tmp_path: Path, item: str, problem: str
) -> None:
    import re

    status, output = _serve(certs, tmp_path, "echo=client-a", item)
    assert status == 2, output
    assert re.search(problem, output), output
    assert "serving" not in output and "Traceback" not in output


def test_an_allow_list_needs_mutual_tls(certs: Certs, tmp_path: Path) -> None:
    status, output = _serve(certs, tmp_path, "echo=client-a", mutual=False)
    assert status == 2 and "--allow needs --client-ca" in output, output
    rt = Runtime(session_manager="memory://")
    tls = ServerTLS.from_files(certs.server.cert, certs.server.key)
    with pytest.raises(InvalidArgument, match="needs mutual TLS"):
        AgentServer(rt, "127.0.0.1:0", tls=tls, allow={"echo": ["client-a"]})
    with pytest.raises(InvalidArgument, match="needs mutual TLS"):
        AgentServer(rt, "127.0.0.1:0", insecure=True, allow={"echo": ["client-a"]})


@pytest.mark.parametrize(
    "allow",
    [
        {"echo": "client-a"},
        {"echo": [b"client-a"]},
        {"echo": [""]},
        {"": ["client-a"]},
        {"echo": ["client-a", "a\x00"]},
    ],
)
def test_the_library_checks_allow_lists_too(allow: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        check_allow(allow)  # type: ignore[arg-type]


# -- at run time: a real node, clients with certificates of odd identities ------------------


@pytest.fixture(scope="module")
def guarded_node(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[Node]:
    """A mutual-TLS node whose ``assistant`` only the :data:`ALLOWED` identities may call."""
    tmp = tmp_path_factory.mktemp("guarded-node")
    log = tmp / "tools.log"
    log.touch()
    args = [*tls_args(certs)]
    for identity in ALLOWED:
        args += ["--allow", f"assistant={identity}"]
    (node,) = start_nodes(tmp, "memory://", 1, args=args, tool_log=log)
    yield node
    node.close()


def _dns(*names: str) -> list[x509.GeneralName]:
    return [x509.DNSName(n) for n in names]


# (common name, subject alternative names): none of them is exactly an allowed identity.
REFUSED: dict[str, tuple[str, list[x509.GeneralName]]] = {
    "NUL in the common name": ("client-a\x00.evil", []),
    "NUL in a DNS name": ("someone", _dns("client-a\x00.evil")),
    "NUL in a URI": ("someone", [x509.UniformResourceIdentifier("spiffe://td/ns/caller\x00x")]),
    "a longer name": ("client-ab", []),
    "a prefix": ("client-", []),
    "other case": ("CLIENT-A", []),
    "a Cyrillic a": ("client-\u0430", []),
    "decomposed e-acute": ("cafe\u0301", []),
    "a control character": ("client\x07a", _dns("client\x07a")),
    "a line break": ("client-b\nclient-a", []),
    "trailing space": ("client-a ", []),
    "a wildcard DNS name": ("someone", _dns("*.example.com", "client-a.example.com")),
    "no common name": ("", _dns("elsewhere")),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("who", list(REFUSED))
async def test_an_identity_not_allowed_exactly_is_refused_before_the_agent_runs(
    guarded_node: Node, certs: Certs, who: str
) -> None:
    tag = f"refused-{list(REFUSED).index(who)}"
    async with _client_as(guarded_node, certs, tag, *REFUSED[who]) as agent:
        with pytest.raises(PermissionDenied, match="not allowed to call agent 'assistant'"):
            await _mark(agent, tag)
        with pytest.raises(PermissionDenied):
            async for _ in agent.stream_hosted(Message.user(f'mark(tag="{tag}")'), user="u",
                                               session=None, time_left=30):  # fmt: skip
                pass
    assert tool_lines(guarded_node.tool_log, f"mark {tag}") == []
    assert guarded_node.proc is not None and guarded_node.proc.poll() is None


SERVED: dict[str, tuple[str, list[x509.GeneralName]]] = {
    "the common name": ("client-a", []),
    "a non-ASCII common name": ("café", []),
    "a URI": ("someone", [x509.UniformResourceIdentifier(ALLOWED[2])]),
    "one DNS name of several": ("someone", [x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                                            x509.DNSName("client-a")]),
}  # fmt: skip


@pytest.mark.asyncio
@pytest.mark.parametrize("who", list(SERVED))
async def test_an_identity_allowed_exactly_is_served(
    guarded_node: Node, certs: Certs, who: str
) -> None:
    tag = f"served-{list(SERVED).index(who)}"
    async with _client_as(guarded_node, certs, tag, *SERVED[who]) as agent:
        out = await _mark(agent, tag)
    assert out.text == f"Results: marked {tag}"
    assert len(tool_lines(guarded_node.tool_log, f"mark {tag}")) == 1


def test_peer_identities_are_read_from_the_certificate(certs: Certs) -> None:
    pair = issue(certs, "nul-cn", "client-a\x00.evil",
                 [*_dns("x.example"), x509.IPAddress(ipaddress.ip_address("::1"))])  # fmt: skip
    assert peer_identities(pair.cert.read_bytes()) == {"client-a\x00.evil", "x.example", "::1"}
    assert peer_identities(None) == frozenset()
    assert peer_identities(b"-----BEGIN CERTIFICATE-----\nnot one\n") == frozenset()


@asynccontextmanager
async def _client_as(
    node: Node, certs: Certs, stem: str, cn: str, sans: list[x509.GeneralName]
) -> AsyncIterator[RemoteAgent]:
    """A client of ``node``'s ``assistant`` with a certificate of its own (``cn``, ``sans``)."""
    pair = issue(certs, stem, cn, sans)
    tls = ClientTLS.from_files(certs.ca, pair.cert, pair.key)
    agent = RemoteAgent(f"grpcs://{node.address}", agent="assistant", tls=tls, attempts=1)
    try:
        yield agent
    finally:
        await agent.stop()


async def _mark(agent: RemoteAgent, tag: str) -> Message:
    """Ask the agent to run the ``mark`` tool, which logs ``mark TAG`` when it runs."""
    return await agent.execute_hosted(Message.user(f'mark(tag="{tag}")'), user="u",
                                      session=None, time_left=30)  # fmt: skip
