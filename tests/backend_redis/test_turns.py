"""Many processes, one user (issue #21) on real Redis servers: what the conformance kit does
not check (the cluster's claim, scripts without FUNCTION, ``ttl=``, an unreachable server);
real processes racing run in tests/core/test_turns_shared.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
from aixgo.errors import BackendUnavailable, SessionNotFound
from aixgo.identifiers import new_id
from aixgo.message import utc_now
from aixgo.session import SessionInfo, SessionPerUser, TurnLeases, open_backend
from aixgo_backend_redis import RedisBackend
from aixgo_backend_redis._keys import Keys

from .helpers import keys_of, raw
from .servers import RedisProcess


@asynccontextmanager
async def backends(url: str, n: int) -> AsyncIterator[list[RedisBackend]]:
    """``n`` opened backends on ``url``, each with its own connections."""
    async with AsyncExitStack() as stack:
        made: list[RedisBackend] = []
        for _ in range(n):
            b = open_backend(url)
            assert isinstance(b, RedisBackend)
            stack.push_async_callback(b.close)
            await b.open()
            made.append(b)
        yield made


def fresh(agent: str = "bot", user: str = "u") -> SessionInfo:
    now = utc_now()
    return SessionInfo(id=new_id(), agent=agent, user_id=user, created_at=now, updated_at=now)


def test_the_backend_declares_both_capabilities() -> None:
    b = RedisBackend("redis://h")
    assert isinstance(b, SessionPerUser) and isinstance(b, TurnLeases)


@pytest.mark.asyncio
async def test_get_or_create_stores_the_new_session_like_create(any_url: str) -> None:
    async with backends(any_url, 1) as (b,):
        info = fresh().model_copy(update={"metadata": {"title": "trip"}})
        got, created = await b.get_or_create_session(info)
        assert created and got == info == await b.get_session(info.id)
        for agent, user in (("bot", "u"), ("bot", None), (None, "u"), (None, None)):
            page = await b.list_sessions(agent=agent, user_id=user)
            assert [i.id for i in page.items] == [info.id]


@pytest.mark.asyncio
async def test_a_claim_whose_creator_died_holds_the_pair_only_until_it_runs_out(
    cluster_url: str, prefix: str
) -> None:
    keys = Keys(prefix)
    async with backends(cluster_url, 1) as (b,), raw(cluster_url) as r:
        dead = new_id()  # claimed the pair, then died before creating the session
        await r.zadd(keys.index("bot", "u"), {dead: 1})
        await r.set(keys.claim("bot", "u"), dead, px=300)
        loop = asyncio.get_running_loop()
        start = loop.time()
        info, created = await b.get_or_create_session(fresh())
        assert created and loop.time() - start >= 0.25
        assert await r.zrange(keys.index("bot", "u"), 0, -1) == [info.id.encode()]
        assert await r.exists(keys.claim("bot", "u")) == 0  # settled


@pytest.mark.asyncio
async def test_a_creator_whose_claim_ran_out_gives_the_pair_up(
    cluster_url: str, prefix: str
) -> None:
    keys = Keys(prefix)
    async with backends(cluster_url, 2) as (slow, quick), raw(cluster_url) as r:
        late = fresh()
        pair = [keys.index("bot", "u"), keys.claim("bot", "u")]
        claim = ["claim", late.id, 1, "0", 60_000]
        assert (await slow._pair(pair, claim))[0] == b"claimed"
        await r.delete(keys.claim("bot", "u"))  # its claim ran out before it created
        info, created = await quick.get_or_create_session(fresh())
        assert created
        argv = [
            "bot", "u", "1", 1, 1, "{}", "\n".join(keys.indexes("bot", "u")),
        ]  # fmt: skip
        assert await slow._create_claimed(late, argv, pair, 1) is False
        assert not [k for k in await keys_of(r, prefix) if late.id in k]
        page = await quick.list_sessions(agent="bot", user_id="u")
        assert [i.id for i in page.items] == [info.id]


@pytest.mark.asyncio
async def test_a_server_that_refuses_functions_runs_both_as_scripts(tmp_path: Path) -> None:
    server = RedisProcess(tmp_path / "acl")
    server.start()
    try:
        server.cli("acl", "setuser", "nofn", "on", ">pw", "~*", "&*", "+@all", "-function")
        url = f"redis://nofn:pw@127.0.0.1:{server.port}/0?prefix=acl:"
        async with backends(url, 2) as (a, b):
            got = await asyncio.gather(*(x.get_or_create_session(fresh()) for x in (a, b) * 4))
            assert sum(created for _, created in got) == 1
            sid = got[0][0].id
            token = await a.acquire_turn(sid, "alice", 5)
            assert token is not None and await b.acquire_turn(sid, "bob", 5) is None
    finally:
        server.stop()


@pytest.mark.asyncio
async def test_with_a_ttl_the_lease_lives_and_expires_with_its_session(
    any_url: str, prefix: str
) -> None:
    url = any_url + "&ttl=1"
    keys = Keys(prefix)
    async with backends(url, 1) as (b,), raw(url) as r:
        info, created = await b.get_or_create_session(fresh())
        assert created
        assert 0 < await r.pttl(keys.session(info.id)[0]) <= 1000
        assert 0 < await r.pttl(keys.index("bot", "u")) <= 1000
        await asyncio.sleep(0.5)
        assert await b.acquire_turn(info.id, "alice", 30) is not None
        # Taking a turn is not a write to the session: its ttl runs on.
        assert await r.pttl(keys.session(info.id)[0]) <= 500
        await asyncio.sleep(0.7)
        with pytest.raises(SessionNotFound):
            await b.acquire_turn(info.id, "alice", 30)
        again, created = await b.get_or_create_session(fresh())
        assert created and again.id != info.id


@pytest.mark.asyncio
async def test_an_unreachable_server_is_backend_unavailable_without_the_password() -> None:
    b = RedisBackend("redis://:s3cret-pw@127.0.0.1:1/0?retry_window=0&connect_timeout=1")
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
