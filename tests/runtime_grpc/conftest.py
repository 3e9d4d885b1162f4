"""Fixtures: test certificates, node processes (stopped after each test), and shared stores on
the real Redis and PostgreSQL servers (a private key prefix / a throwaway database)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from aixgo.identifiers import new_id

from .certs import Certs, make_certs
from .nodes import Node, start_nodes

REDIS = os.environ.get("AIXGO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def tool_log(tmp_path: Path) -> Path:
    path = tmp_path / "tools.log"
    path.touch()
    return path


def tool_lines(path: Path, prefix: str) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith(prefix + " ")]


@pytest.fixture
def redis_store() -> Iterator[str]:
    prefix = f"g{new_id()[:10]}:"
    yield f"{REDIS}?prefix={prefix}"
    client = redis.Redis.from_url(REDIS)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["redis", "postgresql"])
def shared_store(request: pytest.FixtureRequest) -> str:
    """A store two nodes share: each test runs on Redis and on PostgreSQL."""
    return str(request.getfixturevalue("redis_store" if request.param == "redis" else "pg_url"))


NodeFactory = Callable[..., list[Node]]


@pytest.fixture
def nodes(tmp_path: Path, tool_log: Path) -> Iterator[NodeFactory]:
    """``nodes(url, n, args=[...], policy=..., lease_ttl=...)`` starts ``n`` node processes;
    every one is killed after the test."""
    started: list[Node] = []

    def make(url: str, n: int = 1, *, args: list[str], **config: object) -> list[Node]:
        out = start_nodes(tmp_path, url, n, args=args, tool_log=tool_log, **config)
        started.extend(out)
        return out

    yield make
    for node in started:
        node.close()


@pytest.fixture(scope="module")
def mtls_node(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[Node]:
    """One mutual-TLS node on memory:// shared by a module's tests (tags keep them apart)."""
    tmp = tmp_path_factory.mktemp("mtls-node")
    log = tmp / "tools.log"
    log.touch()
    args = [*tls_args(certs), "--allow", "guarded=someone-else", "--allow", "echo=client-a"]
    (node,) = start_nodes(tmp, "memory://", 1, args=args, tool_log=log)
    yield node
    node.close()


def tls_args(c: Certs, *, mutual: bool = True) -> list[str]:
    args = ["--cert", str(c.server.cert), "--key", str(c.server.key)]
    return [*args, "--client-ca", str(c.ca)] if mutual else args
