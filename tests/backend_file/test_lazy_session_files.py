"""A new session is one file, its log, until it needs more: reading creates nothing, the
creator reads other writers' appends, a creator killed at once leaves an intact session, and in
fsync mode sidecars and indexes cut short by a power loss are recovered from the log."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from aixgo import Message
from aixgo.session import SessionManager

from .helpers import Spawn, ask, check_listings


def the_log(store_dir: Path) -> Path:
    (log,) = store_dir.glob("s/*/*.log")
    return log


def session_files(store_dir: Path, sid: str) -> list[str]:
    return sorted(p.suffix for p in store_dir.glob(f"s/*/{sid}.*"))


@pytest.mark.asyncio
async def test_a_new_session_is_one_file_until_it_needs_more(
    store_url: str, store_dir: Path
) -> None:
    async with SessionManager(store_url) as mgr:
        s = await mgr.create("a", user_id="u", metadata={"k": 1})
        assert session_files(store_dir, s.id) == [".log"]
    # Reopened without sidecars: everything reads as an empty session and then grows.
    async with SessionManager(store_url) as mgr:
        s = await mgr.get(s.id)
        assert await s.get_messages() == []
        assert await s.get_messages(last=5) == []
        assert await s.list_checkpoints() == []
        assert (await s.info()).message_count == 0
        assert [i.id for i in (await mgr.list(user_id="u")).items] == [s.id]
        assert session_files(store_dir, s.id) == [".log"]  # reading creates nothing
        empty = await s.checkpoint(label="empty")
        await s.append_message(Message.user("one"))
        await s.restore(empty.id)
        await s.append_message(Message.user("two"))
    async with SessionManager(store_url) as mgr:
        s = await mgr.get(s.id)
        assert [m.text for m in await s.get_messages()] == ["two"]
        assert session_files(store_dir, s.id) == [".idx", ".log", ".meta"]


@pytest.mark.slow
def test_a_session_created_by_a_killed_process_is_intact(
    spawn_worker: Spawn, store_url: str, store_dir: Path
) -> None:
    proc = spawn_worker("serve", store_url)
    sid = ask(proc, "create a u")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert session_files(store_dir, sid) == [".log"]

    async def check() -> None:
        async with SessionManager(store_url) as mgr:
            s = await mgr.get(sid)
            assert (await s.info()).message_count == 0
            assert await s.get_messages(last=3) == []
            await s.append_message(Message.user("after"))
            assert [m.seq for m in await s.get_messages()] == [1]
        await check_listings(store_url, [sid])

    asyncio.run(check())


@pytest.mark.asyncio
async def test_the_creator_reads_what_another_writer_appended(store_url: str) -> None:
    """The creating process's view of a new session counts its header line, so catching up
    with another writer's first message is not mistaken for damage."""
    async with SessionManager(store_url) as one, SessionManager(store_url) as two:
        s = await one.create("a", user_id="u")
        await (await two.get(s.id)).append_message(Message.user("x"))
        assert [m.text for m in await s.get_messages()] == ["x"]
        assert (await s.append_message(Message.user("y"))).seq == 2


@pytest.mark.asyncio
async def test_fsync_mode_survives_a_power_loss_shaped_tail(
    store_url: str, store_dir: Path
) -> None:
    """Only the log is synced: after a power cut a sidecar or index may be short, missing or
    end in zeros, and the log may end in zeros past its last synced record."""
    url = store_url + "?durability=fsync"
    async with SessionManager(url) as mgr:
        s = await mgr.create("a", user_id="u")
        await s.append_messages([Message.user(f"m{i}") for i in range(3)])
        cp = await s.checkpoint()
        await s.append_message(Message.user("m3"))
    log = the_log(store_dir)
    idx, meta = log.with_suffix(".idx"), log.with_suffix(".meta")
    good = (log.read_bytes(), idx.read_bytes(), meta.read_bytes())

    def unlink_sidecars() -> None:
        idx.unlink()
        meta.unlink()

    def empty_indexes() -> None:
        for p in store_dir.glob("i/*.ix"):
            p.write_bytes(b"")

    damages: list[Callable[[], object]] = [
        lambda: idx.write_bytes(good[1] + b"\0" * 32),
        lambda: idx.write_bytes(good[1][:-32]),
        lambda: meta.write_bytes(good[2] + b"\0" * 40),
        unlink_sidecars,
        lambda: log.write_bytes(good[0] + b"\0" * 100),
        empty_indexes,
    ]
    for damage in damages:
        damage()
        async with SessionManager(url) as mgr:
            again = await mgr.get(s.id)
            assert [m.text for m in await again.get_messages()] == ["m0", "m1", "m2", "m3"]
            assert [c.id for c in await again.list_checkpoints()] == [cp.id]
            await again.append_message(Message.user("m4"))
            assert [m.seq for m in await again.get_messages(last=2)] == [4, 5]
            assert [i.id for i in (await mgr.list(user_id="u")).items] == [s.id]
        # Put the files back as they were for the next kind of damage.
        log.write_bytes(good[0])
        idx.write_bytes(good[1])
        meta.write_bytes(good[2])
