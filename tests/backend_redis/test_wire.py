"""The lean command path (aixgo_backend_redis._wire): replies stay in step with their
commands after a cancellation, a timeout or an error reply, a write the server does not take
times out (and is never sent later), and concurrent calls each get their own reply. Scripts
and functions the server lost are loaded again: see test_library.py."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aixgo_backend_redis._wire import Wire, pack
from redis.exceptions import ResponseError, TimeoutError

from .servers import RedisProcess

# Keeps the server busy for ``ARGV[1]`` ms, then answers "slow".
BUSY = """
local t = redis.call('TIME')
local stop = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[1]) * 1000
repeat t = redis.call('TIME') until tonumber(t[1]) * 1000000 + tonumber(t[2]) >= stop
return 'slow'
"""


@pytest_asyncio.fixture
async def client(redis_server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis(port=redis_server.port, socket_timeout=0.5)
    yield c
    await c.aclose()


async def conn_id(wire: Wire) -> int:
    got = await wire.call(pack("CLIENT", "ID"))
    assert isinstance(got, int)
    return got


@pytest.mark.asyncio
async def test_a_call_cancelled_before_its_reply_leaves_the_next_call_in_step(
    client: aioredis.Redis,
) -> None:
    wire = Wire(client.connection_pool)
    task = asyncio.create_task(wire.call(pack("EVAL", BUSY, 0, 200)))
    await asyncio.sleep(0.05)  # sent, and the server is busy with it
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The late "slow" reply must not be taken for this call's.
    assert await wire.call(pack("ECHO", "after")) == b"after"


@pytest.mark.asyncio
async def test_a_timeout_raises_and_the_next_call_gets_its_own_reply(
    client: aioredis.Redis,
) -> None:
    wire = Wire(client.connection_pool)
    with pytest.raises(TimeoutError):
        await wire.call(pack("EVAL", BUSY, 0, 1000))  # socket_timeout is 0.5 s
    assert await wire.call(pack("ECHO", "after")) == b"after"


@pytest.mark.asyncio
async def test_a_write_the_server_does_not_take_times_out_and_the_connection_recovers(
    tmp_path: Path,
) -> None:
    server = RedisProcess(tmp_path / "stopped")
    server.start()
    client = aioredis.Redis(port=server.port, socket_timeout=0.5)
    try:
        wire = Wire(client.connection_pool)
        assert await wire.call(pack("ECHO", "before")) == b"before"  # connected: the lean send
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)  # reads nothing: the socket buffers fill up
        try:
            big = pack("SET", "wire-test-big", b"x" * (64 << 20))
            async with asyncio.timeout(20):  # the guard against a hang, not the measure
                with pytest.raises(TimeoutError, match="writing"):
                    await wire.call(big)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        # The next call has a new connection, and the rest of the failed command was
        # dropped, not sent later: the server never runs it.
        assert await wire.call(pack("ECHO", "after")) == b"after"
        await asyncio.sleep(1)  # time enough to send 64 MiB on loopback many times over
        assert await client.exists("wire-test-big") == 0
    finally:
        await client.aclose()
        server.stop()


@pytest.mark.asyncio
async def test_a_call_on_a_connected_wire_makes_no_task(client: aioredis.Redis) -> None:
    """redis-py's timed send makes a task per command (asyncio.wait_for); ours must not."""
    wire = Wire(client.connection_pool)
    await wire.call(pack("PING"))  # connects
    loop = asyncio.get_running_loop()
    made = 0
    factory = loop.get_task_factory()

    def counting(loop: asyncio.AbstractEventLoop, coro: object, **kw: object) -> asyncio.Task:
        nonlocal made
        made += 1
        return asyncio.Task(coro, loop=loop, **kw)  # type: ignore[arg-type]

    loop.set_task_factory(counting)
    try:
        for i in range(5):
            assert await wire.call(pack("ECHO", f"m{i}")) == f"m{i}".encode()
    finally:
        loop.set_task_factory(factory)
    assert made == 0


@pytest.mark.asyncio
async def test_an_error_reply_is_raised_and_the_connection_is_kept(
    client: aioredis.Redis, prefix: str
) -> None:
    wire = Wire(client.connection_pool)
    await client.set(prefix + "text", "not a number")
    before = await conn_id(wire)
    with pytest.raises(ResponseError, match="not an integer"):
        await wire.call(pack("INCR", prefix + "text"))
    assert await conn_id(wire) == before  # in step, so not reconnected
    await client.delete(prefix + "text")


@pytest.mark.asyncio
async def test_concurrent_calls_each_get_their_own_reply(client: aioredis.Redis) -> None:
    wire = Wire(client.connection_pool)
    got = await asyncio.gather(*(wire.call(pack("ECHO", f"m{i}")) for i in range(40)))
    assert got == [f"m{i}".encode() for i in range(40)]
    # One spare is kept; every other connection went back to the pool.
    pool = client.connection_pool
    assert len(pool._in_use_connections) == 1
