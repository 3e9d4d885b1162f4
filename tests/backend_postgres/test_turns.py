"""Many processes, one user (issue #21) on the real server: what the conformance kit does not
check (a store of schema version 2 migrated, an unreachable server); real processes racing
run in tests/core/test_turns_shared.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from aixgo.errors import BackendUnavailable
from aixgo.identifiers import new_id
from aixgo.message import utc_now
from aixgo.session import SessionInfo, SessionPerUser, TurnLeases
from aixgo_backend_postgres import SCHEMA_VERSION, PostgresBackend
from aixgo_backend_postgres import _migrations as migrations
from aixgo_backend_postgres._schema import MIGRATIONS


@asynccontextmanager
async def backends(url: str, n: int) -> AsyncIterator[list[PostgresBackend]]:
    """``n`` opened backends on ``url``, each with its own pool."""
    async with AsyncExitStack() as stack:
        made: list[PostgresBackend] = []
        for _ in range(n):
            b = PostgresBackend(url)
            stack.push_async_callback(b.close)
            await b.open()
            made.append(b)
        yield made


def fresh(agent: str = "bot", user: str = "u") -> SessionInfo:
    now = utc_now()
    return SessionInfo(id=new_id(), agent=agent, user_id=user, created_at=now, updated_at=now)


def test_the_backend_declares_both_capabilities() -> None:
    b = PostgresBackend("postgresql://h/db")
    assert isinstance(b, SessionPerUser) and isinstance(b, TurnLeases)


@pytest.mark.asyncio
async def test_a_store_of_the_previous_version_gets_the_lease_table(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = MIGRATIONS[:-1]
    with monkeypatch.context() as old:
        old.setattr(migrations, "MIGRATIONS", before)
        old.setattr(migrations, "LATEST", before[-1].version)
        async with backends(pg_url, 1) as (b,):
            s = fresh()
            await b.create_session(s)
    report = await PostgresBackend(pg_url).migrate()
    assert (report.found, report.applied) == (before[-1].version, (SCHEMA_VERSION,))
    async with backends(f"{pg_url}&migrate=false", 1) as (b,):
        assert await b.acquire_turn(s.id, "alice", 5) == 1
        assert (await b.get_or_create_session(fresh()))[0].id == s.id


@pytest.mark.asyncio
async def test_an_unreachable_server_is_backend_unavailable_without_the_password() -> None:
    b = PostgresBackend("postgresql://app:s3cret-pw@127.0.0.1:1/db?connect_timeout=1")
    try:
        for call in (
            b.acquire_turn(new_id(), "alice", 1),
            b.renew_turn(new_id(), "alice", 1),
            b.release_turn(new_id(), "alice"),
            b.get_or_create_session(fresh()),
        ):
            with pytest.raises(BackendUnavailable) as info:
                await call
            assert "s3cret-pw" not in str(info.value)
    finally:
        await b.close()
