"""Many processes, one user (issue #21): get-or-create and turn leases on the real server,
through several backends (each its own pool) and several processes."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from aixgo import Message
from aixgo.errors import BackendUnavailable, SessionNotFound
from aixgo.identifiers import new_id
from aixgo.message import utc_now
from aixgo.session import SessionInfo, SessionPerUser, TurnLeases
from aixgo_backend_postgres import SCHEMA_VERSION, PostgresBackend, migrations
from aixgo_backend_postgres.schema import MIGRATIONS

from .helpers import admin


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
async def test_racing_get_or_create_through_many_backends_makes_one_session(
    pg_url: str,
) -> None:
    async with backends(f"{pg_url}&pool_max_size=4", 3) as bs:
        got = await asyncio.gather(*(bs[i % 3].get_or_create_session(fresh()) for i in range(24)))
        assert sum(created for _, created in got) == 1
        assert len({info.id for info, _ in got}) == 1
        page = await bs[0].list_sessions(agent="bot", user_id="u")
        assert [i.id for i in page.items] == [got[0][0].id]


@pytest.mark.asyncio
async def test_get_or_create_returns_the_pairs_most_recently_updated_session(
    pg_url: str,
) -> None:
    async with backends(pg_url, 1) as (b,):
        first = fresh()
        for info in (first, fresh(), fresh("bot", "other"), fresh("other", "u")):
            await b.create_session(info)
        await b.append_messages(first.id, [Message.user("still talking")])
        info, created = await b.get_or_create_session(fresh())
        assert (info.id, created, info.message_count) == (first.id, False, 1)
        assert info == await b.get_session(first.id)
        made = fresh("bot", "new").model_copy(update={"metadata": {"title": "trip"}})
        got, created = await b.get_or_create_session(made)
        assert created and got == made == await b.get_session(made.id)


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
async def test_a_lease_excludes_other_owners_across_backends(pg_url: str) -> None:
    async with backends(pg_url, 2) as (a, b):
        s = fresh()
        await a.create_session(s)
        token = await a.acquire_turn(s.id, "alice", 5)
        assert token is not None
        assert await b.acquire_turn(s.id, "bob", 5) is None
        assert await b.acquire_turn(s.id, "alice", 5) == token  # same owner: same token
        assert await b.renew_turn(s.id, "bob", 5) is False
        await b.release_turn(s.id, "bob")  # not bob's: nothing happens
        assert await a.acquire_turn(s.id, "bob", 5) is None
        assert await b.renew_turn(s.id, "alice", 5) is True
        await b.release_turn(s.id, "alice")
        assert await a.renew_turn(s.id, "alice", 5) is False
        later = await b.acquire_turn(s.id, "bob", 5)
        assert later is not None and later > token


@pytest.mark.asyncio
async def test_a_lease_expires_after_its_ttl_and_renewing_extends_it(pg_url: str) -> None:
    async with backends(pg_url, 2) as (a, b):
        s = fresh()
        await a.create_session(s)
        first = await a.acquire_turn(s.id, "alice", 0.3)
        assert first is not None
        await asyncio.sleep(0.2)
        assert await a.renew_turn(s.id, "alice", 0.3) is True
        await asyncio.sleep(0.2)  # past the first ttl, within the renewed one
        assert await b.acquire_turn(s.id, "bob", 0.3) is None
        await asyncio.sleep(0.2)
        second = await b.acquire_turn(s.id, "bob", 0.3)
        assert second is not None and second > first
        assert await a.renew_turn(s.id, "alice", 0.3) is False
        assert await a.acquire_turn(s.id, "alice", 0.3) is None
        await asyncio.sleep(0.4)
        again = await b.acquire_turn(s.id, "bob", 0.3)  # expired, so a new acquisition
        assert again is not None and again > second


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
async def test_unknown_sessions_and_delete(pg_url: str, schema: str) -> None:
    async with backends(pg_url, 2) as (a, b):
        missing = new_id()
        with pytest.raises(SessionNotFound):
            await a.acquire_turn(missing, "alice", 1)
        with pytest.raises(SessionNotFound):
            await a.renew_turn(missing, "alice", 1)
        with pytest.raises(SessionNotFound):
            await a.release_turn(missing, "alice")
        s = fresh()
        await a.create_session(s)
        assert await a.acquire_turn(s.id, "alice", 30) is not None
        await b.delete_session(s.id)
        async with await admin(pg_url) as conn:
            cur = await conn.execute(f'SELECT count(*) FROM "{schema}".aixgo_turns')
            assert await cur.fetchone() == (0,)
        with pytest.raises(SessionNotFound):
            await b.acquire_turn(s.id, "bob", 1)


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
