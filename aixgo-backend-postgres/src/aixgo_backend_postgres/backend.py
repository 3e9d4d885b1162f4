"""``postgresql://``: sessions in PostgreSQL, one round trip per operation.

Open makes one direct connection first (so a server that is down fails at once with the
real reason, password redacted), brings the schema up to date on it (the same code as
:meth:`PostgresBackend.migrate`, which ``aixgo sessions migrate`` calls), then starts a
:class:`psycopg_pool.AsyncConnectionPool` (lent out through :mod:`.connections`). Every
operation runs one statement on a pooled connection in autocommit mode; writes that touch
several rows are server-side functions that lock the session row first (see
:mod:`aixgo_backend_postgres._schema`), so atomicity, idempotence and ``expected_seq`` are
enforced by the database, whichever process writes.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import psycopg
from aixgo.cancellation import CancelWatch
from aixgo.errors import (
    BackendClosed,
    BackendUnavailable,
    CheckpointNotFound,
    ConflictError,
    InvalidArgument,
    SessionNotFound,
)
from aixgo.message import Message
from aixgo.session.backend import Capability
from aixgo.session.codec import (
    check_batch,
    check_repeat,
    decode_message,
    stored_copy,
)
from aixgo.session.cursor import decode_cursor, encode_cursor
from aixgo.session.kit import Recent, stale_seq
from aixgo.session.models import Checkpoint, MigrationReport, Page, SessionInfo
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic import TypeAdapter

from aixgo_backend_postgres import _migrations as migrations
from aixgo_backend_postgres import _retry as retry
from aixgo_backend_postgres._connections import Connections
from aixgo_backend_postgres._statements import Statements
from aixgo_backend_postgres._turns import TurnStatements
from aixgo_backend_postgres.options import PostgresOptions, parse_url

__all__ = ["PostgresBackend"]

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]

# SQLSTATEs raised by our server-side functions (see schema.py).
_NO_SESSION = "AXS01"
_NO_CHECKPOINT = "AXC01"
_CONFLICT = "AXC09"
_REPLAY = "AXR01"
_UNIQUE_VIOLATION = "23505"


class PostgresBackend:
    """Session store in PostgreSQL. Build it with a URL (see :mod:`.options`)::

    backend = PostgresBackend("postgresql://app@db/app?schema=aixgo&sslmode=require")
    """

    capabilities: frozenset[Capability] = frozenset(
        {Capability.PERSISTENT, Capability.MULTI_PROCESS}
    )

    def __init__(self, url: str) -> None:
        self.options: PostgresOptions = parse_url(url)
        self.url = self.options.shown
        self._sql = Statements.for_schema(self.options.schema)
        self._turns = TurnStatements.for_schema(self.options.schema)
        self._connections: Connections | None = None
        self._opening = asyncio.Lock()
        self._closed = False
        self._recent = Recent()  # the records of each session's latest tail read, decoded

    def __repr__(self) -> str:
        return f"PostgresBackend({self.url!r})"

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        await self._ready()

    async def _ready(self) -> Connections:
        if self._closed:
            raise BackendClosed(f"backend {self.url}")
        if self._connections is not None:
            return self._connections
        async with self._opening:
            # Another task may have opened (or closed) the backend while this one waited.
            if (ready := self._ready_connections()) is not None:
                return ready
            connections = await self._start()
            if self._is_closed():
                await connections.close()
                raise BackendClosed(f"backend {self.url}")
            self._connections = connections
            return connections

    async def _connect(self) -> Conn:
        """A direct autocommit connection, outside the pool (schema work, first contact)."""
        opts = self.options
        try:
            return await psycopg.AsyncConnection.connect(opts.conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise BackendUnavailable(
                f"cannot connect to PostgreSQL at {opts.shown}: {opts.redactor(str(exc).strip())}"
            ) from None

    async def migrate(self, *, check: bool = False) -> MigrationReport:
        """Bring the schema up to date, or with ``check`` only report whether that is due
        (:class:`aixgo.session.Migratable`; ``aixgo sessions migrate`` calls it).

        Runs on a connection of its own, so it neither needs nor opens the pool, and it
        migrates whatever the URL's ``migrate=`` says. A schema newer than this code raises
        :class:`~aixgo_backend_postgres.SchemaVersionError` and is left as it is.
        """
        self._check_open()
        opts = self.options
        try:
            async with await self._connect() as conn:
                if check:
                    found = await migrations.read_version(conn, opts.schema)
                    return migrations.inspect(found, opts.schema, opts.shown)
                return await migrations.migrate(conn, opts.schema, opts.shown)
        except psycopg.Error as exc:
            raise retry.translate(exc, opts) from None

    async def _start(self) -> Connections:
        opts = self.options
        conn = await self._connect()
        try:
            async with conn:
                found = await migrations.read_version(conn, opts.schema)
                if found != migrations.LATEST:
                    if opts.migrate and (found is None or found < migrations.LATEST):
                        await migrations.migrate(conn, opts.schema, opts.shown)
                    else:
                        migrations.check_version(found, opts.schema, opts.shown)
        except psycopg.Error as exc:
            raise retry.translate(exc, opts) from None
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            opts.conninfo,
            # Every statement of ours runs again and again: prepare it on first use.
            kwargs={"autocommit": True, "prepare_threshold": 0},
            min_size=opts.pool_min_size,
            max_size=opts.pool_max_size,
            timeout=opts.pool_timeout,
            name="aixgo-postgres",
            open=False,
        )
        watch = CancelWatch()  # the pool waits for its first connections in wait_for
        try:
            await pool.open(wait=True, timeout=opts.pool_timeout)
        except PoolTimeout as exc:
            await pool.close()
            raise retry.translate(exc, opts) from None
        if watch.swallowed():
            await pool.close()
            raise asyncio.CancelledError
        return Connections(pool)

    async def close(self) -> None:
        self._closed = True
        self._recent.clear()
        connections, self._connections = self._connections, None
        if connections is not None:
            await connections.close()

    async def _run(self, op: Callable[[Conn, int], Awaitable[T]]) -> T:
        return await retry.run(await self._ready(), self.options, op)

    # -- sessions ----------------------------------------------------------------------

    async def create_session(self, info: SessionInfo) -> None:
        params = (
            info.id,
            info.agent,
            info.user_id,
            info.created_at,
            info.updated_at,
            Jsonb(info.metadata),
        )

        async def op(conn: Conn, attempt: int) -> None:
            row = await (await conn.execute(self._sql.create, params)).fetchone()
            if row is not None and row[0] == 1:
                return
            if attempt > 0:
                # Our first attempt may have committed before its connection dropped.
                same = await self._info(conn, info.id)
                if same is not None and (same.agent, same.user_id, same.created_at) == (
                    info.agent,
                    info.user_id,
                    info.created_at,
                ):
                    return
            raise ConflictError(f"session {info.id!r} exists already")

        await self._run(op)

    async def _info(self, conn: Conn, session_id: str) -> SessionInfo | None:
        row = await (await conn.execute(self._sql.get, (session_id,))).fetchone()
        return None if row is None else _session_info(row)

    async def get_session(self, session_id: str) -> SessionInfo:
        async def op(conn: Conn, attempt: int) -> SessionInfo:
            info = await self._info(conn, session_id)
            if info is None:
                raise SessionNotFound(session_id)
            return info

        return await self._run(op)

    async def list_sessions(
        self,
        *,
        agent: str | None = None,
        user_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[SessionInfo]:
        self._check_open()
        params: dict[str, Any] = {"agent": agent, "user": user_id, "limit": limit + 1}
        if cursor is not None:
            params["after_at"], params["after_id"] = decode_cursor(cursor)
        query = self._sql.lists[agent is not None, user_id is not None, cursor is not None]

        async def op(conn: Conn, attempt: int) -> list[Any]:
            return await (await conn.execute(query, params)).fetchall()

        rows = await self._run(op)
        items = _session_infos(rows[:limit])
        more = len(rows) > limit
        nxt = encode_cursor(items[-1].updated_at, items[-1].id) if more else None
        return Page(items=items, next_cursor=nxt)

    async def delete_session(self, session_id: str) -> None:
        async def op(conn: Conn, attempt: int) -> None:
            row = await (await conn.execute(self._sql.delete, (session_id,))).fetchone()
            # On a retry, "not found" means our first attempt deleted it.
            if (row is None or not row[0]) and attempt == 0:
                raise SessionNotFound(session_id)

        self._recent.drop(session_id)
        await self._run(op)

    # -- messages ----------------------------------------------------------------------

    async def append_messages(
        self, session_id: str, messages: Sequence[Message], *, expected_seq: int | None = None
    ) -> list[Message]:
        self._check_open()
        encoded = check_batch(messages)
        params: tuple[Any, ...]
        if len(encoded) == 1:
            query = self._sql.append_one
            params = (session_id, messages[0].id, encoded[0].decode(), expected_seq)
        else:
            query = self._sql.append
            params = (session_id, _json_array(encoded), expected_seq)

        connections = await self._ready()
        cursor = connections.cursor

        async def op(conn: Conn, attempt: int) -> int | list[Any]:
            try:
                cur = await cursor(conn).execute(query, params)
                # One bigint, read as it came (text) without building a row.
                res = cur.pgresult
                assert res is not None
                value = res.get_value(0, 0)
                assert value is not None
                return int(value)
            except psycopg.DatabaseError as exc:
                _raise_missing(exc, session_id)
                if exc.sqlstate == _CONFLICT:
                    actual = int(exc.diag.message_primary or 0)
                    raise stale_seq(session_id, expected_seq, actual) from None
                if exc.sqlstate not in (_REPLAY, _UNIQUE_VIOLATION):
                    raise
            # Part of the batch was stored before (a retry): the careful way, which returns
            # the stored copies. Rare, so its second round trip does not matter.
            careful = (session_id, _json_array(encoded), expected_seq)
            async with conn.transaction():
                rows = await (await conn.execute(self._sql.append_replay, careful)).fetchall()
                # A reused id with other content: raising rolls back what the call stored.
                for pos, seq, stored in rows:
                    if pos > 0:
                        check_repeat(session_id, self._decode(stored, session_id, seq),
                                     messages[pos - 1])  # fmt: skip
            return rows

        result = await retry.run(connections, self.options, op)
        if isinstance(result, int):
            return [stored_copy(m, result + i) for i, m in enumerate(messages, 1)]
        known: dict[int, Message] = {}
        base = 0
        for pos, seq, stored in result:
            if pos > 0:
                known[pos - 1] = self._decode(stored, session_id, seq)
            elif pos == 0:
                base = seq
            else:
                raise stale_seq(session_id, expected_seq, seq)
        out: list[Message] = []
        for i, m in enumerate(messages):
            if i in known:
                out.append(known[i])
            else:
                base += 1
                out.append(stored_copy(m, base))
        return out

    async def get_messages(self, session_id: str, *, last: int | None = None) -> list[Message]:
        return await self._tail(session_id, last, self._recent)

    async def get_messages_through(
        self, session_id: str, recent: Recent, *, last: int | None = None
    ) -> list[Message]:
        """:class:`~aixgo.session.ReadThrough`: the tail, reusing and keeping records in
        ``recent`` rather than this store's own."""
        return await self._tail(session_id, last, recent)

    async def _tail(self, session_id: str, last: int | None, recent: Recent) -> list[Message]:
        params = {"id": session_id, "last": last}
        connections = await self._ready()
        cursor = connections.cursor  # the kept cursor, as appends use: its loaders are built

        async def op(conn: Conn, attempt: int) -> list[Any]:
            return await (await cursor(conn).execute(self._sql.tail, params)).fetchall()

        rows = await retry.run(connections, self.options, op)
        if not rows:
            raise SessionNotFound(session_id)
        # Rows hold the message with its seq, exactly as the model reads it back. A row whose
        # text is the one this backend read last at that seq is a copy of what it decoded
        # then (see aixgo.session.kit.recent).
        data = [r[1] for r in rows[1:]]
        return recent.decode(
            session_id,
            data,
            [r[0] for r in rows[1:]],
            lambda i: self._decode(data[i], session_id, rows[i + 1][0]),
        )

    def _decode(self, data: str, session_id: str, seq: int) -> Message:
        where = f"{self.options.schema}.aixgo_messages session {session_id} seq {seq}"
        return decode_message(data, where)

    # -- checkpoints -------------------------------------------------------------------

    async def create_checkpoint(
        self, session_id: str, checkpoint_id: str, *, label: str | None = None
    ) -> Checkpoint:
        params = (checkpoint_id, label, session_id)

        async def op(conn: Conn, attempt: int) -> Checkpoint:
            try:
                row = await (await conn.execute(self._sql.checkpoint, params)).fetchone()
            except psycopg.errors.UniqueViolation:
                earlier = await self._checkpoint(conn, session_id, checkpoint_id)
                if attempt > 0 and earlier is not None and earlier.label == label:
                    return earlier
                raise ConflictError(f"checkpoint {checkpoint_id!r} exists already") from None
            if row is None:
                raise SessionNotFound(session_id)
            return Checkpoint(
                id=checkpoint_id,
                session_id=session_id,
                seq=row[0],
                created_at=row[1],
                label=label,
            )

        return await self._run(op)

    async def _checkpoint(
        self, conn: Conn, session_id: str, checkpoint_id: str
    ) -> Checkpoint | None:
        row = await (
            await conn.execute(self._sql.get_checkpoint, (session_id, checkpoint_id))
        ).fetchone()
        if row is None:
            return None
        return Checkpoint(
            id=checkpoint_id, session_id=session_id, seq=row[0], created_at=row[1], label=row[2]
        )

    async def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        async def op(conn: Conn, attempt: int) -> list[Any]:
            return await (await conn.execute(self._sql.checkpoints, {"id": session_id})).fetchall()

        rows = await self._run(op)
        if not rows:
            raise SessionNotFound(session_id)
        return [
            Checkpoint(id=r[0], session_id=session_id, seq=r[1], created_at=r[2], label=r[3])
            for r in rows[1:]
        ]

    async def restore_checkpoint(
        self, session_id: str, checkpoint_id: str, *, undo_id: str
    ) -> Checkpoint:
        params = (session_id, checkpoint_id, undo_id)

        async def op(conn: Conn, attempt: int) -> Checkpoint:
            try:
                row = await (await conn.execute(self._sql.restore, params)).fetchone()
            except psycopg.errors.UniqueViolation:
                earlier = await self._checkpoint(conn, session_id, undo_id)
                # The undo checkpoint and the head move commit together: if a retry finds
                # ours, the restore happened.
                if attempt > 0 and earlier is not None and earlier.label == "before-restore":
                    return earlier
                raise ConflictError(f"checkpoint {undo_id!r} exists already") from None
            except psycopg.DatabaseError as exc:
                _raise_missing(exc, session_id, checkpoint_id)
                raise
            assert row is not None
            return Checkpoint(
                id=undo_id,
                session_id=session_id,
                seq=row[0],
                created_at=row[1],
                label="before-restore",
            )

        return await self._run(op)

    # -- turn leases and a user's session (see turns.py) -------------------------------

    async def acquire_turn(self, session_id: str, owner: str, ttl: float) -> int | None:
        """Take the session's turn lease for ``owner``; the fencing token, or ``None``."""
        params = {"id": session_id, "owner": owner, "ms": _lease_ms(ttl)}

        async def op(conn: Conn, attempt: int) -> int | None:
            try:
                row = await (await conn.execute(self._turns.acquire, params)).fetchone()
            except psycopg.errors.ForeignKeyViolation:
                raise SessionNotFound(session_id) from None
            return None if row is None else int(row[0])

        return await self._run(op)

    async def renew_turn(self, session_id: str, owner: str, ttl: float) -> bool:
        """Extend ``owner``'s live lease to ``ttl`` from now; ``False`` if it was lost."""
        params = {"id": session_id, "owner": owner, "ms": _lease_ms(ttl)}

        async def op(conn: Conn, attempt: int) -> bool:
            row = await (await conn.execute(self._turns.renew, params)).fetchone()
            assert row is not None
            if not row[1]:
                raise SessionNotFound(session_id)
            return bool(row[0])

        return await self._run(op)

    async def release_turn(self, session_id: str, owner: str) -> None:
        """Give up ``owner``'s lease if it holds it; the row (and its token) stays."""
        params = {"id": session_id, "owner": owner}

        async def op(conn: Conn, attempt: int) -> None:
            row = await (await conn.execute(self._turns.release, params)).fetchone()
            if row is None or not row[0]:
                raise SessionNotFound(session_id)

        await self._run(op)

    async def get_or_create_session(self, info: SessionInfo) -> tuple[SessionInfo, bool]:
        """The pair's most recently updated session, or ``info`` stored as a new one; one
        transaction under the pair's advisory lock (see turns.py)."""
        if info.user_id is None:
            raise InvalidArgument("get_or_create_session needs a user id")
        key = json.dumps([self.options.schema, info.agent, info.user_id])
        latest = self._sql.lists[True, True, False]
        mine = {"agent": info.agent, "user": info.user_id, "limit": 1}
        params = (
            info.id, info.agent, info.user_id, info.created_at, info.updated_at,
            Jsonb(info.metadata),
        )  # fmt: skip

        async def op(conn: Conn, attempt: int) -> tuple[SessionInfo, bool]:
            async with conn.transaction():
                await conn.execute(self._turns.pair_lock, (key,))
                row = await (await conn.execute(latest, mine)).fetchone()
                if row is not None:
                    found = _session_info(row)
                    # A retry finds what its first attempt committed before the drop.
                    return found, attempt > 0 and found.id == info.id
                row = await (await conn.execute(self._sql.create, params)).fetchone()
                if row is None or row[0] != 1:
                    raise ConflictError(f"session {info.id!r} exists already")
            return info, True

        return await self._run(op)

    def _is_closed(self) -> bool:
        return self._closed

    def _ready_connections(self) -> Connections | None:
        return self._connections

    def _check_open(self) -> None:
        if self._closed:
            raise BackendClosed(f"backend {self.url}")


def _lease_ms(ttl: float) -> int:
    """A lease's ttl in whole milliseconds, at least one."""
    if not (isinstance(ttl, int | float) and math.isfinite(ttl) and ttl > 0):
        raise InvalidArgument(f"a turn lease's ttl must be positive seconds, not {ttl!r}")
    return max(1, round(ttl * 1000))


def _raise_missing(exc: psycopg.Error, session_id: str, checkpoint_id: str = "") -> None:
    if exc.sqlstate == _NO_SESSION:
        raise SessionNotFound(session_id) from None
    if exc.sqlstate == _NO_CHECKPOINT:
        raise CheckpointNotFound(checkpoint_id, session_id) from None


def _json_array(encoded: list[bytes]) -> str:
    # One text parameter (see statements.py: "append").
    return (b"[" + b",".join(encoded) + b"]").decode()


_INFOS = TypeAdapter(list[SessionInfo])


def _session_infos(rows: Sequence[Sequence[Any]]) -> list[SessionInfo]:
    # A page in one validation: a fraction of the cost of building the rows one by one.
    return _INFOS.validate_python(
        [
            {
                "id": r[0],
                "agent": r[1],
                "user_id": r[2],
                "created_at": r[3],
                "updated_at": r[4],
                "message_count": r[5],
                "metadata": r[6],
            }
            for r in rows
        ]
    )


def _session_info(row: Sequence[Any]) -> SessionInfo:
    return SessionInfo(
        id=row[0],
        agent=row[1],
        user_id=row[2],
        created_at=row[3],
        updated_at=row[4],
        message_count=row[5],
        metadata=row[6],
    )
