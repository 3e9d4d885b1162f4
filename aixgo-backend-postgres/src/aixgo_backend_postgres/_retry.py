"""Retry: run an operation on a pooled connection, again if the connection dropped.

A connection can die under an operation (server restart, failover, ``pg_terminate_backend``,
a proxy timing out). Every operation of the backend is safe to run twice: appends are
idempotent by message id, and the others recognise their own earlier attempt (the ``attempt``
argument tells them it is a retry). So a dropped connection is retried ``retries`` times under
core's :class:`~aixgo.session.kit.RetryPolicy` (growing pauses with jitter), each retry after
the pool has weeded out its other dead connections.
Everything else is translated into aixgo's errors, with the password scrubbed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from aixgo.errors import AixgoError, BackendError, BackendUnavailable
from aixgo.session.kit import RetryPolicy
from psycopg_pool import PoolTimeout

from aixgo_backend_postgres._connections import Connections
from aixgo_backend_postgres.errors import StatementTimeout
from aixgo_backend_postgres.options import PostgresOptions

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]
_log = logging.getLogger("aixgo.postgres")

# Serialization failure, deadlock (the transaction was rolled back: safe to run again) and
# the server shutting down or terminating our backend.
_TRANSIENT = frozenset({"40001", "40P01", "57P01", "57P02", "57P03"})
# Query cancelled (statement_timeout) and lock_timeout.
_TIMEOUT = frozenset({"57014", "55P03"})


def is_transient(exc: psycopg.Error, conn: Conn | None) -> bool:
    """Whether ``exc`` means the work did not happen or may be done again safely."""
    if isinstance(exc, PoolTimeout):
        return False
    state = exc.sqlstate
    if state in _TRANSIENT or (state is not None and state.startswith("08")):
        return True
    if conn is not None and (conn.broken or conn.closed):
        return True
    # libpq's own failures (connection lost before any server answer) carry no SQLSTATE.
    return isinstance(exc, psycopg.OperationalError) and state is None


def translate(exc: psycopg.Error, opts: PostgresOptions) -> AixgoError:
    """The aixgo error for a psycopg error."""
    text = opts.redactor(str(exc).strip())  # libpq's and the server's words may quote it
    if exc.sqlstate in _TIMEOUT:
        limit = f" ({opts.statement_timeout_ms} ms)" if opts.statement_timeout_ms else ""
        return StatementTimeout(
            f"PostgreSQL at {opts.shown} cancelled a statement that ran past its time "
            f"limit{limit}; nothing it did was kept: {text}"
        )
    if isinstance(exc, PoolTimeout):
        return BackendUnavailable(
            f"no connection to PostgreSQL at {opts.shown} within {opts.pool_timeout:g} s "
            f"(all {opts.pool_max_size} in use, or the server is down): {text}"
        )
    if isinstance(exc, psycopg.OperationalError):
        return BackendUnavailable(f"PostgreSQL at {opts.shown} is unavailable: {text}")
    state = f" [{exc.sqlstate}]" if exc.sqlstate else ""
    return BackendError(f"PostgreSQL at {opts.shown} failed{state}: {text}")


async def run(
    connections: Connections,
    opts: PostgresOptions,
    op: Callable[[Conn, int], Awaitable[T]],
) -> T:
    """``await op(conn, attempt)`` on a pooled connection, retrying dropped connections."""
    conn: Conn | None = None  # the connection the last attempt ran on, if it got one

    async def attempt(n: int) -> T:
        nonlocal conn
        if n:
            # A dropped connection rarely comes alone (restart, failover): test the idle
            # ones so the retry does not pick another dead one.
            await connections.check()
        conn = None
        conn, since = await connections.take()
        try:
            return await op(conn, n)
        finally:
            await connections.give(conn, since)

    def transient(exc: Exception) -> bool:
        return isinstance(exc, psycopg.Error) and is_transient(exc, conn)

    def retrying(exc: Exception, attempt: int) -> None:
        # A lost connection warns once per operation; contention and later attempts are routine.
        assert isinstance(exc, psycopg.Error)  # transient() said so
        quiet = attempt > 0 or exc.sqlstate in ("40001", "40P01")
        _log.log(logging.DEBUG if quiet else logging.WARNING, "PostgreSQL at %s: %s; retrying",
                 opts.shown, opts.redactor(str(exc).strip()) or type(exc).__name__)  # fmt: skip

    policy = RetryPolicy(deadline=None, attempts=opts.retries)
    try:
        return await policy.run(attempt, transient, retrying)
    except psycopg.Error as exc:
        raise translate(exc, opts) from None
