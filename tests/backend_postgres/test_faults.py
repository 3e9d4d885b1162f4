"""Faults on the real server: down at open, connections killed mid-run, statement timeouts."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import psycopg
import pytest
from aixgo import Message
from aixgo.errors import BackendTimeout, BackendUnavailable, SessionNotFound
from aixgo.session import SessionManager
from aixgo_backend_postgres import PostgresBackend, StatementTimeout

from .helpers import admin, terminate_others, wait_for_lock_waiter


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.asyncio
async def test_server_down_at_open_is_unavailable_without_the_password() -> None:
    url = f"postgresql://app:hunter2@127.0.0.1:{closed_port()}/db?schema=s"
    backend = PostgresBackend(url)
    with pytest.raises(BackendUnavailable) as info:
        await backend.open()
    text = str(info.value)
    assert "hunter2" not in text and "app:***@127.0.0.1" in text
    assert "refused" in text.lower() or "connect" in text.lower()
    # Lazily too: the first operation reports the same way.
    with pytest.raises(BackendUnavailable):
        await backend.get_session("a" * 26)
    await backend.close()


@pytest.mark.asyncio
async def test_pool_reconnects_after_every_connection_is_terminated(pg_url: str) -> None:
    async with SessionManager(f"{pg_url}&pool_min_size=3&pool_max_size=3") as mgr:
        s = await mgr.create("assistant", user_id="u")
        await s.append_message(Message.user("before"))
        assert await terminate_others(pg_url) >= 1
        # Every pooled connection is dead now; the operations still work, once each.
        await s.append_message(Message.user("after"))
        assert [m.text for m in await s.get_messages()] == ["before", "after"]
        assert await terminate_others(pg_url) >= 1
        assert (await s.info()).message_count == 2


@pytest.mark.asyncio
async def test_append_killed_mid_statement_is_retried_once(pg_url: str) -> None:
    async with SessionManager(pg_url) as mgr:
        s = await mgr.create("assistant", user_id="u")
        await s.append_message(Message.user("one"))
        async with await admin(pg_url) as locker:
            # Hold the session row so the append blocks inside the server, then kill it there.
            async with locker.transaction():
                await locker.execute(
                    f'SELECT 1 FROM "{pg_url.rsplit("=", 1)[1]}".aixgo_sessions '
                    "WHERE id = %s FOR UPDATE",
                    (s.id,),
                )
                task = asyncio.create_task(s.append_message(Message.user("two")))
                pid = await wait_for_lock_waiter(pg_url, "%aixgo_append%")
                await locker.execute("SELECT pg_terminate_backend(%s)", (pid,))
                await asyncio.sleep(0.1)
            stored = await asyncio.wait_for(task, 10)
        assert stored.seq == 2
        assert [m.text for m in await s.get_messages()] == ["one", "two"]


@pytest.mark.asyncio
async def test_a_lost_connection_logs_one_warning_without_the_password(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # trust authentication ignores the password; it must still never be logged
    url = pg_url.replace("postgresql://postgres@", "postgresql://postgres:s3cret-Pw@", 1)
    assert "s3cret-Pw" in url
    async with SessionManager(f"{url}&pool_min_size=2&pool_max_size=2") as mgr:
        s = await mgr.create("assistant", user_id="u")
        assert await terminate_others(pg_url) >= 1
        caplog.set_level(logging.DEBUG, logger="aixgo.postgres")
        await s.append_message(Message.user("after"))  # on a dead connection: retried
    records = [r for r in caplog.records if r.name == "aixgo.postgres"]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "PostgreSQL at postgresql://postgres:***@127.0.0.1" in warnings[0]
    assert warnings[0].endswith("; retrying")
    assert all("s3cret-Pw" not in r.getMessage() for r in records)


class _DropAfterCommit:
    """Makes the first statement matching ``marker`` commit on the server and then lose its
    connection before the client sees the result: the case a retry must not duplicate."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, marker: bytes) -> None:
        self.fired = 0
        # Every statement goes through a cursor's execute (conn.execute makes a cursor).
        real = psycopg.AsyncCursor.execute

        async def execute(cur: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            out = await real(cur, query, *args, **kwargs)
            if not self.fired and isinstance(query, bytes) and marker in query:
                self.fired += 1
                conn = cur.connection
                pid = conn.info.backend_pid
                async with await psycopg.AsyncConnection.connect(
                    conn.info.dsn, password=conn.info.password, autocommit=True
                ) as killer:
                    await killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
                await asyncio.sleep(0.05)
                raise psycopg.OperationalError("simulated: connection lost after commit")
            return out

        monkeypatch.setattr(psycopg.AsyncCursor, "execute", execute)


@pytest.mark.asyncio
async def test_every_write_is_safe_to_retry_after_it_committed(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SessionManager(pg_url) as mgr:
        drop = _DropAfterCommit(monkeypatch, b"aixgo_sessions (id, agent")
        s = await mgr.create("assistant", user_id="u", metadata={"k": 1})
        assert drop.fired == 1 and (await s.info()).metadata == {"k": 1}

        drop = _DropAfterCommit(monkeypatch, b"aixgo_append")
        batch = [Message.user("a"), Message.assistant("b")]
        stored = await s.append_messages(batch, expected_seq=0)
        assert drop.fired == 1 and [m.seq for m in stored] == [1, 2]
        assert [m.text for m in await s.get_messages()] == ["a", "b"]

        drop = _DropAfterCommit(monkeypatch, b"aixgo_append_one")
        one = await s.append_message(Message.user("a1"), expected_seq=2)
        assert drop.fired == 1 and one.seq == 3
        assert [m.text for m in await s.get_messages()] == ["a", "b", "a1"]

        drop = _DropAfterCommit(monkeypatch, b"INSERT INTO")
        cp = await s.checkpoint(label="x")
        assert drop.fired == 1 and [c.id for c in await s.list_checkpoints()] == [cp.id]

        await s.append_message(Message.user("c"))
        drop = _DropAfterCommit(monkeypatch, b"aixgo_restore")
        undo = await s.restore(cp.id)
        assert drop.fired == 1 and undo.seq == 4 and undo.label == "before-restore"
        assert [m.text for m in await s.get_messages()] == ["a", "b", "a1"]
        assert len(await s.list_checkpoints()) == 2

        drop = _DropAfterCommit(monkeypatch, b"aixgo_delete_session")
        await mgr.delete(s.id)
        assert drop.fired == 1
        with pytest.raises(SessionNotFound):
            await mgr.get(s.id)


@pytest.mark.asyncio
async def test_statement_timeout_is_a_typed_error(pg_url: str) -> None:
    async with SessionManager(f"{pg_url}&statement_timeout_ms=200") as mgr:
        s = await mgr.create("assistant", user_id="u")
        async with await admin(pg_url) as locker, locker.transaction():
            await locker.execute(
                f'SELECT 1 FROM "{pg_url.rsplit("=", 1)[1]}".aixgo_sessions '
                "WHERE id = %s FOR UPDATE",
                (s.id,),
            )
            with pytest.raises(StatementTimeout) as info:
                await s.append_message(Message.user("slow"))
        assert "200 ms" in str(info.value)
        # The core class every backend's timeouts share, so callers need no psycopg.
        assert isinstance(info.value, BackendTimeout) and isinstance(info.value, TimeoutError)
        # Nothing was kept, and the backend works on.
        assert await s.get_messages() == []
        await s.append_message(Message.user("fast"))
        assert (await s.info()).message_count == 1


@pytest.mark.asyncio
async def test_no_free_connection_in_time_is_unavailable(pg_url: str, schema: str) -> None:
    url = f"{pg_url}&pool_min_size=1&pool_max_size=1&pool_timeout=0.3"
    async with SessionManager(url) as mgr:
        s = await mgr.create("assistant", user_id="u")
        async with await admin(pg_url) as locker, locker.transaction():
            await locker.execute(
                f'SELECT 1 FROM "{schema}".aixgo_sessions WHERE id = %s FOR UPDATE', (s.id,)
            )
            blocked = asyncio.create_task(s.append_message(Message.user("waits")))
            await wait_for_lock_waiter(pg_url, "%aixgo_append%")
            with pytest.raises(BackendUnavailable) as info:
                await mgr.get(s.id)  # the only connection is busy
            assert "within 0.3 s" in str(info.value)
        await asyncio.wait_for(blocked, 10)
        assert (await s.info()).message_count == 1


@pytest.mark.asyncio
async def test_with_retries_0_a_dropped_connection_is_reported(pg_url: str) -> None:
    async with SessionManager(f"{pg_url}&retries=0") as mgr:
        s = await mgr.create("assistant", user_id="u")
        assert await terminate_others(pg_url) >= 1
        with pytest.raises(BackendUnavailable):
            await s.get_messages()
        assert await s.get_messages() == []  # the pool has replaced the dead connection


@pytest.mark.asyncio
async def test_libpq_ssl_options_reach_libpq(pg_url: str) -> None:
    async with SessionManager(f"{pg_url}&sslmode=disable&application_name=aixgo-test") as mgr:
        await mgr.create("assistant")
        async with await admin(pg_url) as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'aixgo-test'"
            )
            assert await cur.fetchone() == (1,)
    url = f"{pg_url}&sslmode=verify-full&sslrootcert=/nonexistent/root.crt"
    backend = PostgresBackend(url)
    with pytest.raises(BackendUnavailable) as info:  # libpq refused: SSL or the root cert
        await backend.open()
    await backend.close()
    assert "ssl" in str(info.value).lower() or "root.crt" in str(info.value)
