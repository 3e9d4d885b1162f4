"""The function library on a standalone server (aixgo_backend_redis._scripts): one library per
aixgo version, other versions' libraries removed at open (and loaded again by a process that
still runs one), lost functions loaded again, and a server at its memory limit still serves
reads, listing and deletes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aixgo import Message
from aixgo.errors import BackendError
from aixgo_backend_redis import RedisBackend
from aixgo_backend_redis._scripts import LIBRARY_PREFIX, library

from .helpers import manager
from .servers import RedisProcess

OTHER_VERSION = LIBRARY_PREFIX + "0123456789ab"
# Not ours, though it starts like ours: never deleted.
SOMEONE_ELSES = LIBRARY_PREFIX + "notes"


def lib(name: str, function: str) -> str:
    return f"#!lua name={name}\nredis.register_function('{function}', function() return 1 end)"


@pytest_asyncio.fixture
async def plain(redis_server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(port=redis_server.port)
    yield client
    await client.aclose()


async def libraries(client: aioredis.Redis) -> set[str]:
    return {e[1].decode() for e in await client.function_list(library=LIBRARY_PREFIX + "*")}


@pytest.mark.asyncio
async def test_open_loads_this_versions_library_and_deletes_other_versions(
    redis_url: str, plain: aioredis.Redis
) -> None:
    await plain.function_load(lib(OTHER_VERSION, OTHER_VERSION + "_append"))
    await plain.function_load(lib(SOMEONE_ELSES, "someone_elses_function"))
    try:
        async with manager(redis_url) as mgr:
            s = await mgr.create("bot", user_id="u")
            await s.append_message(Message.user("hi"))
        assert await libraries(plain) == {library()[0], SOMEONE_ELSES}
    finally:
        await plain.function_delete(SOMEONE_ELSES)
        if OTHER_VERSION in await libraries(plain):
            await plain.function_delete(OTHER_VERSION)


@pytest.mark.asyncio
async def test_a_library_deleted_by_another_version_is_loaded_again(
    redis_url: str, plain: aioredis.Redis
) -> None:
    async with manager(redis_url) as mgr:
        s = await mgr.create("bot", user_id="u")
        await s.append_message(Message.user("before"))
        await plain.function_delete(library()[0])  # what a newer version's open does
        await s.append_message(Message.user("after"))
        await plain.function_flush()  # and what a restart of a server without disk does
        await plain.script_flush()
        assert [m.text for m in await s.get_messages()] == ["before", "after"]
        assert (await mgr.list(user_id="u")).items[0].id == s.id


@pytest.mark.asyncio
async def test_a_full_server_still_reads_lists_and_deletes(tmp_path: Path) -> None:
    server = RedisProcess(tmp_path / "full")
    server.start()
    try:
        async with manager(f"{server.url}?prefix=full:&retry_window=1") as mgr:
            assert isinstance(mgr.backend, RedisBackend)
            s = await mgr.create("bot", user_id="u")
            await s.append_messages([Message.user(f"m{i}") for i in range(20)])
            cp = await s.checkpoint()
            server.cli("config", "set", "maxmemory", "1")  # every write is now refused
            with pytest.raises(BackendError, match="OutOfMemory"):
                await s.append_message(Message.user("no room"))
            assert len(await s.get_messages(last=5)) == 5
            assert [c.id for c in await s.list_checkpoints()] == [cp.id]
            assert [i.id for i in (await mgr.list(user_id="u")).items] == [s.id]
            assert (await (await mgr.get(s.id)).info()).message_count == 20
            await mgr.delete(s.id)  # frees memory, so it must work
            assert (await mgr.list(user_id="u")).items == []
    finally:
        server.stop()


@pytest.mark.asyncio
async def test_a_server_that_refuses_functions_gets_scripts(tmp_path: Path) -> None:
    server = RedisProcess(tmp_path / "acl")
    server.start()
    try:
        server.cli("acl", "setuser", "nofn", "on", ">pw", "~*", "&*", "+@all", "-function")
        url = f"redis://nofn:pw@127.0.0.1:{server.port}/0?prefix=acl:"
        async with manager(url) as mgr:
            s = await mgr.create("bot", user_id="u")
            await s.append_message(Message.user("one"))
            server.cli("script", "flush")  # and scripts lost later are loaded again
            await s.append_message(Message.user("two"))
            assert [m.text for m in await s.get_messages()] == ["one", "two"]
            assert [i.id for i in (await mgr.list(user_id="u")).items] == [s.id]
        assert "aixgo" not in server.cli("function", "list")
    finally:
        server.stop()
