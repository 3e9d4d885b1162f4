"""Connections: the pool, with one connection kept at hand between operations.

Taking a connection from :class:`psycopg_pool.AsyncConnectionPool` and giving it back costs
a dozen coroutine hops, an asyncio lock and bookkeeping: on a small machine about as much
client time as the rest of a one-message append. Most work comes one operation at a time
(an agent's turn), so the connection an operation gives back is kept as the *spare*, and the
next operation takes it without asking the pool. Everything else goes through the pool as
before, which stays in charge of the connections:

* the spare is one of the pool's connections (checked out), so ``pool_max_size`` still
  bounds them all;
* it is given back to the pool instead of kept when a task is waiting for the pool (so no
  one waits for a connection the pool cannot see), when it is not idle and healthy (the pool
  then rolls back or discards it), when it was taken from the pool more than
  :data:`KEEP_SECONDS` ago (so the pool's lifetime and health checks keep applying), and
  before :meth:`Connections.check` and :meth:`Connections.close`.

A connection out of the pool also keeps one cursor (:meth:`Connections.cursor`), so the hot
path does not build a cursor and its adaptation state per statement.
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import Any

import psycopg
from aixgo.cancellation import CancelWatch
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

Conn = psycopg.AsyncConnection[Any]
Cursor = psycopg.AsyncCursor[Any]

#: The longest a connection stays out of the pool as the spare.
KEEP_SECONDS = 10.0


class Connections:
    """``take()`` a connection (and when it left the pool), ``give()`` both back."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool
        self._spare: tuple[Conn, float] | None = None
        self._waiting = 0  # tasks inside pool.getconn()
        self._closed = False
        # A cursor per connection out of the pool (lent or spare); dropped when it goes back.
        self._cursors: dict[Conn, Cursor] = {}

    async def take(self) -> tuple[Conn, float]:
        """A connection for one operation, and the time it left the pool."""
        if self._spare is not None:
            spare, self._spare = self._spare, None
            return spare
        self._waiting += 1
        watch = CancelWatch()
        try:
            conn = await self.pool.getconn()
        finally:
            self._waiting -= 1
        if watch.swallowed():
            # The pool handed the connection over as this task was cancelled, and its
            # wait_for (Python 3.11) returned it anyway: give it back, stay cancelled.
            await self.pool.putconn(conn)
            raise asyncio.CancelledError
        return conn, monotonic()

    def cursor(self, conn: Conn) -> Cursor:
        """A cursor of ``conn`` (which :meth:`take` gave), the same one each time until the
        connection goes back to the pool.

        ``conn.execute()`` builds a new cursor for every statement, whose adaptation state
        (the dumpers of the parameters, the loaders of the result) is then built again too,
        on every append (docs/performance.md). A connection runs one operation
        at a time, so one cursor each is enough; every ``execute`` starts it afresh.
        """
        cur = self._cursors.get(conn)
        if cur is None:
            cur = self._cursors[conn] = conn.cursor()
        return cur

    async def give(self, conn: Conn, since: float) -> None:
        """Return what :meth:`take` gave, whatever state the operation left it in."""
        if (
            self._spare is None
            and not self._waiting
            and not self._closed
            and not conn.broken
            and conn.pgconn.transaction_status == TransactionStatus.IDLE
            and monotonic() - since < KEEP_SECONDS
        ):
            self._spare = (conn, since)
            return
        self._cursors.pop(conn, None)
        await self.pool.putconn(conn)

    async def check(self) -> None:
        """Test every idle connection (the spare too) and replace the dead ones."""
        await self._return_spare()
        await self.pool.check()

    async def close(self) -> None:
        """Close the pool and every connection in it; later gives go to the closed pool."""
        self._closed = True
        await self._return_spare()
        await self.pool.close()

    async def _return_spare(self) -> None:
        if self._spare is not None:
            (conn, _), self._spare = self._spare, None
            self._cursors.pop(conn, None)
            await self.pool.putconn(conn)
