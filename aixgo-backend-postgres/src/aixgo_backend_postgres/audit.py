"""An audit sink in a PostgreSQL table: ``AuditLog("postgresql://host/db?table=aixgo_audit")``.

Two URL options are ours (``table``, default ``aixgo_audit``; ``schema``, default ``public``);
the rest go to libpq. The table (``idx bigint primary key, line text``) is created on the
first write. Appends from every process and machine are serialized by a transaction-scoped
advisory lock, so they form one chain. Give the role that writes it only ``INSERT`` and
``SELECT`` on the table: the chain shows any change, but cannot prevent one.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from aixgo.audit import Sealer
from aixgo.audit._chain import link_of
from aixgo.errors import AuditError, ConfigError
from aixgo.session.redaction import Redactor
from psycopg import sql

__all__ = ["PostgresAuditSink"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_PAGE = 1000
_CREATE = sql.SQL("CREATE TABLE IF NOT EXISTS {} (idx bigint PRIMARY KEY, line text NOT NULL)")
_CREATE = sql.SQL("CREATE TABLE IF NOT EXISTS {} (idx bigint PRIMARY KEY, line text NOT NULL)")


class PostgresAuditSink:
    """The audit records in a table (see the module docs)."""

    def __init__(self, url: str, *, fsync: bool = False) -> None:
        # Every commit is durable on the server already: fsync asks for nothing more.
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = {k: v for k, v in query if k in ("table", "schema")}
        for name in ("table", "schema"):
            if name in ours and not _NAME.fullmatch(ours[name]):
                raise ConfigError(f"audit sink option {name}={ours[name]!r} is not a name we "
                                  "accept: letters, digits and _ (at most 63)")  # fmt: skip
        self._schema = sql.Identifier(ours.get("schema", "public"))
        self._table = sql.Identifier(ours.get("schema", "public"), ours.get("table", "aixgo_audit"))
        rest = urlencode([(k, v) for k, v in query if k not in ("table", "schema")])
        self._dsn = urlunsplit(parts._replace(query=rest))
        qualified = f"{ours.get('schema', 'public')}.{ours.get('table', 'aixgo_audit')}"
        self._lock_id = int.from_bytes(hashlib.sha256(qualified.encode()).digest()[:8], "big",
                                       signed=True)  # fmt: skip
        self._shown = Redactor(url).shown
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._mutex: asyncio.Lock | None = None
        self._ready = False

    def __repr__(self) -> str:
        return f"PostgresAuditSink({self._shown!r})"

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self._dsn)
        return self._conn

    async def write(self, bodies: Sequence[dict[str, Any]], sealer: Sealer) -> None:
        """Append ``bodies`` as the next records, under the table's advisory lock."""
        if self._mutex is None:
            self._mutex = asyncio.Lock()
        async with self._mutex:
            try:
                conn = await self._connection()
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_id,))
                    if not self._ready:
                        await conn.execute(
                            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self._schema)
                        )
                        await conn.execute(_CREATE.format(self._table))
                    cur = await conn.execute(
                        sql.SQL("SELECT line FROM {} ORDER BY idx DESC LIMIT 1").format(self._table)
                    )
                    row = await cur.fetchone()
                    index, prev = 0, ""
                    if row is not None:
                        link = link_of(row[0])
                        if link is None:
                            raise AuditError(f"the last row of {self!r} is not an audit record; "
                                             "run 'aixgo audit verify' on it")  # fmt: skip
                        index, prev = link[0] + 1, link[1]
                    rows = []
                    for body in bodies:
                        line, prev = sealer.seal(body, index, prev)
                        rows.append((index, line))
                        index += 1
                    async with conn.cursor() as c:
                        await c.executemany(
                            sql.SQL("INSERT INTO {} (idx, line) VALUES (%s, %s)").format(
                                self._table
                            ),
                            rows,
                        )
                self._ready = True
            except BaseException:
                await self._drop()
                raise

    async def lines(self) -> AsyncIterator[str]:
        """The stored records in order (by ``idx``), a page at a time."""
        conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
        try:
            after = -1
            while True:
                try:
                    cur = await conn.execute(
                        sql.SQL("SELECT idx, line FROM {} WHERE idx > %s ORDER BY idx LIMIT %s")
                        .format(self._table),
                        (after, _PAGE),
                    )  # fmt: skip
                except psycopg.errors.UndefinedTable:
                    raise AuditError(f"{self!r} has no audit table") from None
                rows = await cur.fetchall()
                for idx, line in rows:
                    yield line
                    after = idx
                if len(rows) < _PAGE:
                    return
        finally:
            await conn.close()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def close(self) -> None:
        """Close the connection; idempotent."""
        await self._drop()
