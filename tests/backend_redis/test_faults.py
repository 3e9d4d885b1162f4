"""Faults on real servers: Redis down at open, killed and restarted mid-run, and too slow."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aixgo import Message, errors
from aixgo.errors import BackendUnavailable
from aixgo.session import SessionManager, open_backend
from aixgo_backend_redis import BackendTimeout
from aixgo_backend_redis._connection import make_client
from aixgo_backend_redis._keys import Keys
from aixgo_backend_redis.options import parse_url
from redis import exceptions as rx

from .helpers import manager, raw
from .servers import RedisCluster3, RedisProcess, free_port


@pytest.fixture
def durable_server(tmp_path: Path) -> Iterator[RedisProcess]:
    """A private server that fsyncs every write before acknowledging it, so a kill -9 and a
    restart on the same port keep every acknowledged write."""
    server = RedisProcess(tmp_path / "durable", durable=True)
    server.start()
    yield server
    server.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
async def test_down_at_open_is_unavailable_and_hides_the_password(scheme: str) -> None:
    url = f"{scheme}://alice:hunter2@127.0.0.1:{free_port()}/?prefix=x:&connect_timeout=1"
    url = url.replace("/?", "?") if scheme == "redis+cluster" else url
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as err:
        async with SessionManager(open_backend(url)):
            pass  # a failed open leaves no connection to close (filterwarnings=error)
    assert time.monotonic() - started < 3  # open does not wait out the retry window
    text = str(err.value)
    assert "hunter2" not in text and "alice:***@127.0.0.1" in text
    assert not isinstance(err.value, BackendTimeout)


@pytest.mark.asyncio
async def test_down_during_an_operation_gives_up_after_the_retry_window() -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0?retry_window=0.5"
    backend = open_backend(url)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="get_session") as err:
        await backend.get_session("a" * 26)
    await backend.close()
    assert 0.3 < time.monotonic() - started < 3
    assert "hunter2" not in str(err.value)


@pytest.mark.asyncio
async def test_restart_mid_run_loses_and_duplicates_nothing(durable_server: RedisProcess) -> None:
    url = durable_server.url + "?prefix=r:&timeout=2&retry_window=20"
    async with manager(url) as mgr:
        s = await mgr.create("bot", user_id="u")
        acknowledged: list[str] = []
        halfway = asyncio.Event()

        async def writer() -> None:
            for i in range(60):
                batch = [Message.user(f"m{i}a"), Message.assistant(f"m{i}b")]
                stored = await s.append_messages(batch)
                acknowledged.extend(m.text for m in stored)
                if i == 15:
                    halfway.set()
                await asyncio.sleep(0.005)

        task = asyncio.create_task(writer())
        await halfway.wait()
        await asyncio.to_thread(durable_server.stop, kill=True)  # kill -9, mid-run
        await asyncio.sleep(0.3)
        await asyncio.to_thread(durable_server.start)  # same port, same AOF
        await asyncio.wait_for(task, 30)

        history = [m.text for m in await s.get_messages()]
        assert history == acknowledged == [f"m{i}{x}" for i in range(60) for x in "ab"]
        assert [m.seq for m in await s.get_messages(last=3)] == [118, 119, 120]
        assert [i.id for i in (await mgr.list(user_id="u")).items] == [s.id]


@pytest.mark.asyncio
async def test_cluster_node_restart_mid_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    cluster = RedisCluster3(tmp_path / "cluster", durable=True)
    cluster.start()
    try:
        url = cluster.url + "?prefix=c:&timeout=2&retry_window=20"
        async with manager(url) as mgr:
            sessions = [await mgr.create("bot", user_id=f"u{i}") for i in range(6)]
            for i in range(10):
                for s in sessions:
                    await s.append_message(Message.user(f"{s.id} {i}"))
                if i == 4:  # kill -9 the master of sessions[0] mid-run; it comes back on its
                    # port with its AOF
                    async with raw(url) as r:
                        node = r.get_node_from_key(Keys("c:").session(sessions[0].id)[0])
                    victim = next(n for n in cluster.nodes if n.port == node.port)
                    await asyncio.to_thread(victim.stop, kill=True)
                    await asyncio.sleep(0.3)
                    await asyncio.to_thread(victim.start)
            for s in sessions:
                texts = [m.text for m in await s.get_messages()]
                assert texts == [f"{s.id} {i}" for i in range(10)]
                assert [i.id for i in (await mgr.list(user_id=s.user_id or "")).items] == [s.id]
    finally:
        cluster.stop()


@pytest.mark.asyncio
async def test_a_stopped_server_coming_back_within_the_window(
    durable_server: RedisProcess,
) -> None:
    url = durable_server.url + "?prefix=r:&retry_window=20"
    async with manager(url) as mgr:
        s = await mgr.create("bot")
        await s.append_message(Message.user("before"))
        durable_server.stop()

        async def come_back() -> None:
            await asyncio.sleep(0.5)
            await asyncio.to_thread(durable_server.start)

        back = asyncio.create_task(come_back())
        stored = await s.append_message(Message.user("during"))  # waits for the server
        await back
        assert stored.seq == 2
        assert [m.text for m in await s.get_messages()] == ["before", "during"]


@pytest.mark.asyncio
async def test_a_retry_after_a_server_stop_logs_one_warning_without_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisProcess(tmp_path / "pw", durable=True, password="hunter2-pw")
    server.start()
    try:
        async with manager(server.url + "?prefix=r:&retry_window=20") as mgr:
            s = await mgr.create("bot")
            server.stop()
            caplog.set_level(logging.DEBUG, logger="aixgo.redis")

            async def come_back() -> None:
                await asyncio.sleep(0.5)
                await asyncio.to_thread(server.start)

            back = asyncio.create_task(come_back())
            await s.append_message(Message.user("during"))  # waits for the server
            await back
    finally:
        server.stop()
    records = [r for r in caplog.records if r.name == "aixgo.redis"]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"Redis at redis://:***@127.0.0.1:{server.port}/0" in warnings[0]
    assert "; retrying" in warnings[0]
    assert all("hunter2-pw" not in r.getMessage() for r in records)


@pytest.mark.asyncio
async def test_a_slow_server_is_a_typed_timeout_never_a_hang(tmp_path: Path) -> None:
    server = RedisProcess(tmp_path / "slow")
    server.start()
    try:
        async with manager(server.url + "?prefix=s:&timeout=0.3&retry_window=10") as mgr:
            s = await mgr.create("bot")
            server.cli("client", "pause", "3000", "all")
            started = time.monotonic()
            with pytest.raises(BackendTimeout, match=r"within 0.3 s") as err:
                await s.append_message(Message.user("slow"))
            elapsed = time.monotonic() - started
            assert 0.25 < elapsed < 1.5, elapsed  # one timeout, not one per retry
            assert isinstance(err.value, BackendUnavailable | TimeoutError)
            assert isinstance(err.value, errors.BackendTimeout)  # the core class, too
            server.cli("client", "unpause")
            # Repeating the same message after a timeout never stores it twice.
            msg = Message.user("again")
            server.cli("client", "pause", "3000", "write")
            with pytest.raises(BackendTimeout):
                await s.append_message(msg)
            server.cli("client", "unpause")
            # The timed-out appends were sent, so the server may have run them once it resumed;
            # the repeat then finds "again" stored and returns it instead of storing it twice.
            stored = await s.append_message(msg)
            texts = [m.text for m in await s.get_messages()]
            assert texts in (["slow", "again"], ["again"])
            assert stored.seq == len(texts)
    finally:
        server.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["standalone", "cluster"])
async def test_a_write_redis_py_gave_up_on_is_never_sent_later(
    kind: str, redis_server: RedisProcess, redis_cluster: RedisCluster3, prefix: str
) -> None:
    """redis-py's own send path (every command of a cluster; a standalone client's commands
    outside the wire): a write that times out is dropped, not sent once the server reads
    again, so the server never runs a command reported as failed."""
    base = redis_server.url if kind == "standalone" else redis_cluster.url
    client = make_client(parse_url(f"{base}?prefix={prefix}&timeout=0.5"))
    key = f"{prefix}big"
    try:
        await client.get(key)  # connected to the key's server: the write is what stalls
        if kind == "standalone":
            server = redis_server
        else:
            port = client.get_node_from_key(key).port  # type: ignore[union-attr]
            server = next(n for n in redis_cluster.nodes if n.port == port)
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)  # reads nothing: the socket buffers fill up
        try:
            async with asyncio.timeout(20):  # the guard against a hang, not the measure
                with pytest.raises(rx.TimeoutError, match="writing"):
                    await client.set(key, b"x" * (64 << 20))
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        await asyncio.sleep(1)  # time enough to send 64 MiB on loopback many times over
        assert await client.exists(key) == 0
    finally:
        await client.delete(key)
        await client.aclose()
