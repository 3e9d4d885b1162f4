"""The spare connection in front of the pool: reused one operation after another, never kept
from a waiting task, never kept when unhealthy or old, given back before checks and close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from time import monotonic
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from aixgo_backend_postgres._connections import KEEP_SECONDS, Connections
from psycopg_pool import AsyncConnectionPool, PoolClosed

from .helpers import admin


@pytest_asyncio.fixture
async def lent(pg_database: str) -> AsyncIterator[Connections]:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        pg_database, kwargs={"autocommit": True}, min_size=1, max_size=1, timeout=5, open=False
    )
    await pool.open(wait=True)
    connections = Connections(pool)
    yield connections
    await connections.close()


def _requests(connections: Connections) -> int:
    return int(connections.pool.get_stats().get("requests_num", 0))


@pytest.mark.asyncio
async def test_one_operation_after_another_reuses_the_spare(lent: Connections) -> None:
    first, since = await lent.take()
    await lent.give(first, since)
    asked = _requests(lent)
    for _ in range(5):
        conn, again = await lent.take()
        assert conn is first and again == since
        await conn.execute("SELECT 1")
        await lent.give(conn, again)
    assert _requests(lent) == asked  # the pool was not asked again


@pytest.mark.asyncio
async def test_a_waiting_task_gets_the_connection_not_the_spare(lent: Connections) -> None:
    held, since = await lent.take()
    waiter = asyncio.create_task(lent.take())
    await asyncio.sleep(0.05)
    assert not waiter.done()  # max_size=1: it waits in the pool
    await lent.give(held, since)
    conn, _ = await asyncio.wait_for(waiter, 5)  # handed over by the pool, no timeout
    assert conn is held
    await lent.give(conn, monotonic())


@pytest.mark.asyncio
async def test_only_idle_healthy_recent_connections_are_kept(
    lent: Connections, pg_database: str
) -> None:
    conn, since = await lent.take()
    await conn.execute("BEGIN")  # left in a transaction: the pool must roll it back
    await lent.give(conn, since)
    conn, since = await lent.take()
    assert (await (await conn.execute("SELECT now() = statement_timestamp()")).fetchone()) == (
        True,
    )  # no transaction left open
    await lent.give(conn, monotonic() - KEEP_SECONDS - 1)  # out for too long
    asked = _requests(lent)
    conn, since = await lent.take()
    assert _requests(lent) == asked + 1  # it came from the pool again
    pid = conn.info.backend_pid
    async with await admin(pg_database) as killer:
        await killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):
        await conn.execute("SELECT 1")
    assert conn.broken or conn.closed
    await lent.give(conn, since)  # dead: back to the pool, which replaces it
    conn, since = await lent.take()
    assert conn.info.backend_pid != pid
    assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
    await lent.give(conn, since)


@pytest.mark.asyncio
async def test_check_tests_the_spare_and_close_closes_it(
    lent: Connections, pg_database: str
) -> None:
    conn, since = await lent.take()
    pid = conn.info.backend_pid
    await lent.give(conn, since)  # now the spare
    async with await admin(pg_database) as killer:
        await killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
    await lent.check()  # finds the spare dead and replaces it
    fresh, since = await lent.take()
    assert fresh.info.backend_pid != pid
    assert await (await fresh.execute("SELECT 1")).fetchone() == (1,)
    await lent.give(fresh, since)
    await lent.close()
    assert fresh.closed
    with pytest.raises(PoolClosed):
        await lent.take()


@pytest.mark.asyncio
async def test_each_connection_keeps_one_cursor_that_survives_errors(
    lent: Connections, pg_database: str
) -> None:
    conn, since = await lent.take()
    cur = lent.cursor(conn)
    assert lent.cursor(conn) is cur
    await cur.execute("SELECT 1")
    with pytest.raises(psycopg.errors.DivisionByZero):
        await lent.cursor(conn).execute("SELECT 1 / 0")
    assert await (await lent.cursor(conn).execute("SELECT 2")).fetchone() == (2,)
    # A connection the pool replaces gets a cursor of its own, and the old one goes with it.
    async with await admin(pg_database) as killer:
        await killer.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
    with pytest.raises(psycopg.OperationalError):
        await cur.execute("SELECT 1")
    await lent.give(conn, since)
    fresh, since = await lent.take()
    assert fresh is not conn and lent.cursor(fresh) is not cur
    assert await (await lent.cursor(fresh).execute("SELECT 3")).fetchone() == (3,)
    await lent.give(fresh, since)  # the spare now, with its cursor
    assert list(lent._cursors) == [fresh]
    await lent.close()
    assert not lent._cursors


@pytest.mark.asyncio
async def test_a_take_cancelled_as_the_pool_hands_over_raises_and_keeps_the_connection(
    lent: Connections,
) -> None:
    # psycopg_pool waits for a connection inside asyncio.wait_for, which on Python 3.11
    # returns the connection when the cancellation lands just after the hand-over. Cancel
    # the waiter at every step of the hand-over: it must always raise, and the connection
    # must go back to the pool either way.
    returned = []
    for steps in range(12):
        held, since = await lent.take()
        waiter = asyncio.create_task(lent.take())
        await asyncio.sleep(0.01)  # waiting in the pool (max_size=1)
        await lent.give(held, since)
        for _ in range(steps):
            await asyncio.sleep(0)
        asked = waiter.cancel()  # False once the waiter has finished: nothing to test
        try:
            conn, at = await waiter
        except asyncio.CancelledError:
            pass
        else:
            if asked:
                returned.append(steps)
            await lent.give(conn, at)
        conn, at = await asyncio.wait_for(lent.take(), 5)  # not lost to the cancelled waiter
        await lent.give(conn, at)
    assert returned == []
