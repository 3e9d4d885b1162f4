"""``sqlite:///path/to/sessions.db``: sessions in one SQLite file (WAL, 0600) by SimpleBackend."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from aixgo import hookimpl
from aixgo.errors import BackendUnavailable, ConfigError
from aixgo.hookspecs import BackendRegister
from aixgo.session import Capability
from aixgo.session.simple import HeadRow, MessageRow, SimpleBackend, SimpleStore, StoreTransaction

__all__ = ["SqliteBackend", "SqliteStore", "aixgo_register_backends"]

SCHEMA = """BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS heads (id TEXT PRIMARY KEY, agent TEXT NOT NULL, user_id TEXT,
    updated INTEGER NOT NULL, data BLOB NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS heads_agent ON heads (agent, updated, id);
CREATE INDEX IF NOT EXISTS heads_user ON heads (user_id, updated, id);
CREATE INDEX IF NOT EXISTS heads_updated ON heads (updated, id);
CREATE TABLE IF NOT EXISTS messages (session TEXT, branch INTEGER, seq INTEGER, id TEXT NOT NULL,
    data BLOB NOT NULL, PRIMARY KEY (session, branch, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_id ON messages (session, id);
CREATE TABLE IF NOT EXISTS checkpoints (session TEXT, id TEXT, data BLOB NOT NULL,
    PRIMARY KEY (session, id)); COMMIT;"""


class SqliteStore(SimpleStore, StoreTransaction):
    """One connection on one worker thread (waiting for a lock never blocks the event loop)."""

    capabilities = frozenset({Capability.PERSISTENT, Capability.MULTI_PROCESS})

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="aixgo-sqlite")
        self._turn = asyncio.Lock()

    async def _q(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._do, sql, args)

    def _do(self, sql: str, args: Sequence[Any]) -> list[Any]:
        try:
            if self._db is None:  # first use, on the worker thread that keeps the connection
                os.makedirs(os.path.dirname(self.path) or ".", 0o700, exist_ok=True)
                os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
                db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
                # Fails at once while another opener switches; the file keeps the mode it set.
                with contextlib.suppress(sqlite3.OperationalError):
                    db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)  # its BEGIN IMMEDIATE waits for other writers
                self._db = db  # only once ready: a failed first use is tried again whole
            if sql == "ROLLBACK" and not self._db.in_transaction:  # BEGIN or COMMIT failed
                return []
            return self._db.execute(sql, args).fetchall()
        except (OSError, sqlite3.OperationalError) as exc:
            raise BackendUnavailable(f"sqlite://{self.path}: {exc}") from None

    async def open(self) -> None:
        await self._q("SELECT 1")

    async def close(self) -> None:
        async with self._turn:
            if self._db is not None:
                await asyncio.get_running_loop().run_in_executor(self._thread, self._db.close)
        self._thread.shutdown(wait=False)

    @asynccontextmanager
    async def transaction(self, session_id: str | None, *, write: bool) -> AsyncIterator[Self]:
        async with self._turn:
            try:  # BEGIN too: cancelled while waiting, it may still start on the thread
                await self._q("BEGIN IMMEDIATE" if write else "BEGIN")
                yield self
                await self._q("COMMIT")
            except BaseException:
                await self._q("ROLLBACK")
                raise

    async def get_head(self, session_id: str) -> bytes | None:
        rows = await self._q("SELECT data FROM heads WHERE id = ?", (session_id,))
        return rows[0][0] if rows else None

    async def put_head(self, head: HeadRow) -> None:
        await self._q("INSERT OR REPLACE INTO heads VALUES (?, ?, ?, ?, ?)", head)

    async def list_heads(
        self, agent: str | None, user_id: str | None, after: tuple[int, str] | None, limit: int
    ) -> list[bytes]:
        sql, args = "SELECT data FROM heads WHERE 1", list[Any]()
        for column, value in (("agent", agent), ("user_id", user_id)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        if after is not None:
            sql += " AND (updated, id) < (?, ?)"
            args += after
        sql += " ORDER BY updated DESC, id DESC LIMIT ?"
        return [r[0] for r in await self._q(sql, [*args, limit])]

    async def delete_session(self, session_id: str) -> None:
        for table in ("heads WHERE id", "messages WHERE session", "checkpoints WHERE session"):
            await self._q(f"DELETE FROM {table} = ?", (session_id,))  # noqa: S608

    async def insert_messages(self, session_id: str, rows: Sequence[MessageRow]) -> None:
        for row in rows:
            await self._q("INSERT INTO messages VALUES (?, ?, ?, ?, ?)", (session_id, *row))

    async def read_messages(self, session_id: str, branch: int, lo: int, hi: int) -> list[bytes]:
        sql = "SELECT data FROM messages WHERE session = ? AND branch = ? AND seq BETWEEN ? AND ?"
        return [r[0] for r in await self._q(f"{sql} ORDER BY seq", (session_id, branch, lo, hi))]

    async def find_messages(self, session_id: str, message_ids: Sequence[str]) -> list[MessageRow]:
        where = f"session = ? AND id IN ({', '.join('?' * len(message_ids))})"
        sql = f"SELECT branch, seq, id, data FROM messages WHERE {where}"  # noqa: S608
        return [MessageRow(*r) for r in await self._q(sql, (session_id, *message_ids))]

    async def insert_checkpoint(self, session_id: str, checkpoint_id: str, data: bytes) -> None:
        await self._q("INSERT INTO checkpoints VALUES (?, ?, ?)", (session_id, checkpoint_id, data))

    async def get_checkpoint(self, session_id: str, checkpoint_id: str) -> bytes | None:
        sql = "SELECT data FROM checkpoints WHERE session = ? AND id = ?"
        return next((r[0] for r in await self._q(sql, (session_id, checkpoint_id))), None)

    async def list_checkpoints(self, session_id: str) -> list[bytes]:
        sql = "SELECT data FROM checkpoints WHERE session = ? ORDER BY rowid"
        return [r[0] for r in await self._q(sql, (session_id,))]


class SqliteBackend(SimpleBackend):
    """The ``sqlite://`` backend: ``SqliteBackend("sqlite:///path/to/sessions.db")``."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "sqlite" or parts.netloc not in ("", "localhost") or not parts.path:
            raise ConfigError(f"expected sqlite:///absolute/path/to/file.db, not {url!r}")
        super().__init__(SqliteStore(unquote(parts.path)), url)


@hookimpl
def aixgo_register_backends(register: BackendRegister) -> None:
    """Register ``sqlite://``."""
    register("sqlite", SqliteBackend)
