"""Small helpers shared by the Redis backend tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from aixgo import Message
from aixgo.session import SessionManager, open_backend
from aixgo_backend_redis import RedisBackend
from redis.asyncio.cluster import ClusterNode, RedisCluster


@asynccontextmanager
async def manager(url: str) -> AsyncIterator[SessionManager]:
    async with SessionManager(open_backend(url)) as mgr:
        yield mgr


async def short_round_trip(url: str) -> None:
    """Create, append, read back and delete one session over ``url`` (a connectivity check
    for the TLS and cluster tests)."""
    async with manager(url) as mgr:
        s = await mgr.create("bot", user_id="u")
        await s.append_message(Message.user("over TLS"))
        assert [m.text for m in await s.get_messages(last=5)] == ["over TLS"]
        await mgr.delete(s.id)


@asynccontextmanager
async def raw(url: str) -> AsyncIterator[Any]:
    """A plain redis-py client on the same server(s), to look at the keys directly."""
    o = RedisBackend(url).options
    client: Any
    if o.cluster:
        client = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in o.hosts])
        await client.initialize()
    else:
        client = aioredis.Redis(host=o.hosts[0][0], port=o.hosts[0][1], db=o.db)
    try:
        yield client
    finally:
        await client.aclose()


async def keys_of(client: Any, prefix: str) -> list[str]:
    """Every key under ``prefix`` (all nodes of a cluster)."""
    if isinstance(client, RedisCluster):
        found: list[str] = []
        for node in client.get_primaries():
            r = aioredis.Redis(host=node.host, port=node.port)
            try:
                found += [k.decode() async for k in r.scan_iter(match=f"{prefix}*")]
            finally:
                await r.aclose()
        return sorted(found)
    return sorted([k.decode() async for k in client.scan_iter(match=f"{prefix}*")])
