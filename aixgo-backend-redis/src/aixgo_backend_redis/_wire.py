"""The lean command path to a standalone server, for the scripts every operation runs.

redis-py's ``execute_command`` does a lot per call before anything reaches the socket
(docs/performance.md has the cost): a pool checkout and return under an asyncio lock with
observability hooks on both, argument encoding one ``isinstance`` at a time, a retry wrapper
(with no retries: :mod:`aixgo_backend_redis._retry` owns those) and the response callbacks.
Our scripts need none of it, so :class:`Wire` sends a command already packed as RESP
(:func:`pack`) on a connection of the client's own pool and reads the reply with the same
connection's parser (hiredis), timeouts and error mapping. The connection is then kept as
the *spare* for the next call instead of going back to the pool: one checkout per burst of
calls, not one per call. The pool holds one connection more than ``pool_size`` for it.

The send is ours too (:func:`send`). With a socket timeout set, redis-py's
``send_packed_command`` wraps the write in ``asyncio.wait_for``, which on Python 3.11 makes
a task per command: two more turns of the event loop for every call. But a
write to an open transport only queues the bytes; it can only have to wait when the
transport's buffer is over its high-water mark, so only then is the wait bounded by the
timeout.

A failed call leaves the connection in step: it is disconnected on any error but a complete
error reply (``ResponseError``), including a cancellation mid-reply, and a disconnected
connection reconnects (and authenticates) on its next command.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from redis import exceptions as rx
from redis.asyncio.connection import AbstractConnection, ConnectionPool

#: What :func:`pack` accepts: text (sent as UTF-8), bytes as they are, ints in decimal.
Arg = str | bytes | int


def pack(*args: Arg) -> bytes:
    """One command as a RESP array of bulk strings, as redis-py would send it.

    >>> pack("RPUSH", "k", b"v", 7)
    b'*4\\r\\n$5\\r\\nRPUSH\\r\\n$1\\r\\nk\\r\\n$1\\r\\nv\\r\\n$1\\r\\n7\\r\\n'
    """
    return b"*%d\r\n%b" % (len(args), pack_args(args))


def pack_args(args: Iterable[Arg]) -> bytes:
    """The bulk strings of ``args``, without the array header: a command's parts packed
    ahead of time are joined with :func:`pack_args` of the rest.

    >>> b"*3\\r\\n" + pack_args(["GET"]) + pack_args(["k", 1]) == pack("GET", "k", 1)
    True
    """
    out = []
    for a in args:
        data = a if isinstance(a, bytes) else a.encode() if isinstance(a, str) else b"%d" % a
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


async def send(conn: AbstractConnection, packed: bytes) -> None:
    """Write ``packed`` on ``conn``, connecting it first if it is not connected; raise
    redis-py's ``TimeoutError`` if the server has not taken it all within ``socket_timeout``
    seconds, or ``ConnectionError`` if the connection is lost (dropping what was not sent and
    disconnecting ``conn`` either way)."""
    writer = getattr(conn, "_writer", None)  # None: not connected (or not redis-py's layout)
    if writer is None or not conn.is_connected:
        await conn.send_packed_command(packed, check_health=False)  # connects, then sends
        return
    try:
        writer.write(packed)
        transport = writer.transport
        if transport.get_write_buffer_size() or transport.is_closing():
            # Not all taken by the kernel at once: wait while the transport is paused (drain
            # returns at once otherwise), and see a lost connection now rather than later.
            async with asyncio.timeout(conn.socket_timeout):
                await writer.drain()
    except BaseException as exc:
        # Drop what is still buffered (a plain close would send it later, and the server
        # would run a command we reported as failed), then let redis-py forget the connection.
        # The backend's own connections do this in disconnect() (connection.DropUnsent); a
        # Wire may be given any redis-py pool, whose connections do not.
        writer.transport.abort()
        await conn.disconnect(nowait=True)
        if isinstance(exc, TimeoutError):  # asyncio's, the builtin
            raise rx.TimeoutError("Timeout writing to socket") from None
        if isinstance(exc, OSError):
            raise rx.ConnectionError(f"Error while writing to socket: {exc}") from exc
        raise


class Wire:
    """Sends packed commands on connections of ``pool``, keeping one as a spare.

    >>> import asyncio, redis.asyncio as redis
    >>> async def demo():
    ...     client = redis.Redis()  # a standalone server on localhost:6379
    ...     wire = Wire(client.connection_pool)
    ...     try:
    ...         return await wire.call(pack("ECHO", "hi"))
    ...     finally:
    ...         await client.aclose()
    >>> asyncio.run(demo())  # doctest: +SKIP
    b'hi'
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._spare: AbstractConnection | None = None

    async def call(self, packed: bytes) -> Any:
        """Send ``packed`` and return the server's reply; an error reply is raised as the
        redis-py exception for it (``NoScriptError``, ``ResponseError``, ...), as are
        connection errors and timeouts."""
        conn = self._spare
        if conn is not None:
            self._spare = None
        else:
            conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await send(conn, packed)
            return await conn.read_response()
        finally:
            if self._spare is None:
                self._spare = conn
            else:
                await self._pool.release(conn)
