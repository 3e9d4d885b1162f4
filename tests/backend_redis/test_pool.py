"""The connection pool is bounded by ``pool_size``: many concurrent calls share it without
ever opening more connections, and a call that cannot get one in time fails with a typed
timeout instead of hanging or failing at once."""

from __future__ import annotations

import asyncio

import pytest
from aixgo import Message
from aixgo.session import Redactor
from aixgo_backend_redis import RedisBackend
from aixgo_backend_redis._connection import make_client
from aixgo_backend_redis._retry import BackendTimeout, Retrier
from aixgo_backend_redis._wire import Wire, pack
from aixgo_backend_redis.options import parse_url
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

from .helpers import manager


def _url(base: str, **options: object) -> str:
    return base + "".join(f"&{k}={v}" for k, v in options.items())


@pytest.mark.asyncio
async def test_many_concurrent_calls_use_at_most_pool_size_connections(redis_url: str) -> None:
    async with manager(_url(redis_url, pool_size=3)) as mgr:
        s = await mgr.create("bot", user_id="u")
        await asyncio.gather(*(s.append_message(Message.user(f"m{i}")) for i in range(200)))
        backend = mgr.backend
        assert isinstance(backend, RedisBackend)
        client, _ = backend._connection()
        assert isinstance(client, Redis)
        pool = client.connection_pool
        opened = len(pool._available_connections) + len(pool._in_use_connections)
        assert 1 <= opened <= 3
        assert [m.seq for m in await s.get_messages()] == list(range(1, 201))


@pytest.mark.asyncio
async def test_waiting_for_a_free_slot_is_bounded_by_timeout() -> None:
    retry = Retrier(Redactor("redis://x"), window=1.0, timeout=0.05, slots=1)
    release = asyncio.Event()

    async def busy(retried: bool) -> None:
        await release.wait()

    async def quick(retried: bool) -> str:
        return "done"

    holder = asyncio.create_task(retry.run("hold", busy))
    await asyncio.sleep(0)
    with pytest.raises(BackendTimeout, match="no free connection.*pool_size"):
        await retry.run("append_messages", quick)
    release.set()
    await holder
    assert await retry.run("append_messages", quick) == "done"  # the slot came back


@pytest.mark.asyncio
async def test_a_failed_attempt_gives_its_slot_back_before_backing_off() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    retry = Retrier(Redactor("redis://x"), window=5.0, timeout=1.0, slots=1, base=0.2, cap=0.2)
    attempts = 0

    async def flaky(retried: bool) -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RedisConnectionError("reset (test)")
        return attempts

    async def other(retried: bool) -> str:
        return "ran during the backoff"

    first = asyncio.create_task(retry.run("append_messages", flaky))
    await asyncio.sleep(0.02)  # the first attempt failed; it is sleeping, holding no slot
    assert await asyncio.wait_for(retry.run("get_messages", other), 0.1) == "ran during the backoff"
    assert await first == 2


@pytest.mark.asyncio
async def test_a_call_cancelled_while_it_connects_raises(redis_url: str) -> None:
    # redis-py writes a new connection's handshake inside asyncio.wait_for, which on Python
    # 3.11 returns when the cancellation lands just after the write. Cancel a first call
    # (so it connects) at each step of the way: it must raise every time, never answer.
    answered = []
    for steps in range(40):
        client = make_client(parse_url(redis_url))
        try:
            assert isinstance(client, Redis)
            call = asyncio.create_task(Wire(client.connection_pool).call(pack("PING")))
            for _ in range(steps):
                await asyncio.sleep(0)
            asked = call.cancel()  # False once the call has finished: nothing to test
            try:
                await call
            except asyncio.CancelledError:
                pass
            else:
                if asked:
                    answered.append(steps)
        finally:
            await client.aclose()
    assert answered == []


@pytest.mark.asyncio
async def test_a_connection_closed_under_its_handshake_is_a_connection_error(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What redis-py's cluster client does to in-flight connections when one command times
    # out (it closes every node's connections from another task): here, once the connection
    # is made, it is closed before the first command is written.
    client = make_client(parse_url(redis_url))
    try:
        assert isinstance(client, Redis)
        conn = client.connection_pool.make_connection()
        original = type(conn).on_connect_check_health

        async def then_closed(self: AbstractConnection, check_health: bool = True) -> None:
            await original(self, check_health=check_health)
            await self.disconnect()

        monkeypatch.setattr(type(conn), "on_connect_check_health", then_closed)
        with pytest.raises(RedisConnectionError, match="closed while in use"):
            await conn.send_packed_command(pack("PING"))
    finally:
        await client.aclose()
