"""Many processes, one user (issue #21): get-or-create and turn leases on the real server,
through several backends (each its own pool) and several processes."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from aixgo.errors import BackendUnavailable
from aixgo.identifiers import new_id
from aixgo.message import utc_now
from aixgo.session import SessionInfo, SessionPerUser, TurnLeases
from aixgo_backend_postgres import SCHEMA_VERSION, PostgresBackend, migrations
from aixgo_backend_postgres.schema import MIGRATIONS


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


WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from aixgo.identifiers import new_id
    from aixgo.message import utc_now
    from aixgo.session import SessionInfo
    from aixgo_backend_postgres import PostgresBackend

    async def main(url):
        b = PostgresBackend(url)
        await b.open()
        try:
            now = utc_now()
            calls = [
                b.get_or_create_session(
                    SessionInfo(id=new_id(), agent="bot", user_id="u", created_at=now,
                                updated_at=now))
                for _ in range(5)
            ]
            for info, created in await asyncio.gather(*calls):
                print(info.id, int(created))
        finally:
            await b.close()

    asyncio.run(main(sys.argv[1]))
    """
)


@pytest.mark.asyncio
async def test_processes_racing_get_or_create_make_one_session(pg_url: str) -> None:
    async with backends(pg_url, 1):  # the schema exists before the race
        pass
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", WORKER, f"{pg_url}&pool_max_size=3",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]  # fmt: skip
    outs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 60)
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    lines = [line.split() for out, _ in outs for line in out.decode().splitlines()]
    assert len(lines) == 15
    assert len({sid for sid, _ in lines}) == 1
    assert sum(int(created) for _, created in lines) == 1


# -- turn leases ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_tokens_strictly_increase_under_contention(pg_url: str) -> None:
    async with backends(f"{pg_url}&pool_max_size=3", 2) as bs:
        s = fresh()
        await bs[0].create_session(s)
        taken: list[int] = []

        async def contend(owner: str, b: PostgresBackend) -> None:
            for _ in range(10):
                token = await b.acquire_turn(s.id, owner, 5)
                if token is not None:
                    taken.append(token)  # before the release: in acquisition order
                    await b.release_turn(s.id, owner)
                await asyncio.sleep(0)

        await asyncio.gather(*(contend(f"o{i}", bs[i % 2]) for i in range(4)))
        assert len(taken) >= 4
        assert taken == sorted(set(taken))


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
