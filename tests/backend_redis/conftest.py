"""Fixtures: a private redis-server and a private 3-master Redis Cluster for the whole run,
and a unique key prefix per test whose keys are deleted afterwards."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aixgo.identifiers import new_id

from .servers import RedisCluster3, RedisProcess, TlsFiles


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    folder = tmp_path_factory.mktemp("redis")
    server = RedisProcess(folder, extra=("--unixsocket", str(folder / "redis.sock")))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster3]:
    cluster = RedisCluster3(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsFiles]:
    """A test CA and the certificates it signed (see :class:`TlsFiles`), for the TLS tests."""
    files = TlsFiles.make(tmp_path_factory.mktemp("tls-files"))
    yield files
    shutil.rmtree(files.folder, ignore_errors=True)


@pytest.fixture
def prefix() -> str:
    """Keys of this test only: ``t<random>:``."""
    return f"t{new_id()[:10]}:"


@pytest_asyncio.fixture
async def redis_url(redis_server: RedisProcess, prefix: str) -> AsyncIterator[str]:
    """A standalone URL under a fresh prefix; the prefix's keys are removed afterwards."""
    yield f"{redis_server.url}?prefix={prefix}&timeout=2&retry_window=5"
    client = aioredis.Redis(port=redis_server.port)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(params=["standalone", "cluster"])
def any_url(request: pytest.FixtureRequest) -> str:
    """Each test that asks for it runs on a standalone server and on the cluster."""
    name = "redis_url" if request.param == "standalone" else "cluster_url"
    return str(request.getfixturevalue(name))


@pytest_asyncio.fixture
async def cluster_url(redis_cluster: RedisCluster3, prefix: str) -> AsyncIterator[str]:
    yield f"{redis_cluster.url}?prefix={prefix}&timeout=2&retry_window=5"
    for node in redis_cluster.nodes:
        client = aioredis.Redis(port=node.port)
        try:
            async for key in client.scan_iter(match=f"{prefix}*", count=1000):
                await client.delete(key)
        finally:
            await client.aclose()
