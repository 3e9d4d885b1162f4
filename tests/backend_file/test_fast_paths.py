"""The append and create shortcuts: files made on first need, and listing-index lines skipped
while the session's own were written moments ago. Each must keep listing order and crash
safety exactly as without it."""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from aixgo import Message
from aixgo.clock import from_micros, now_micros
from aixgo.session import SessionManager
from aixgo_backend_file.index import ENTRY, REFRESH_US

#: The spawn_worker fixture (conftest.py): starts worker.py and waits until it is ready.
Spawn = Callable[..., "subprocess.Popen[str]"]


KEYS: list[dict[str, str]] = [
    {},
    {"agent": "a"},
    {"user_id": "u"},
    {"agent": "a", "user_id": "u"},
]


def index_sizes(store_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in store_dir.glob("i/*.ix")}


def the_log(store_dir: Path) -> Path:
    (log,) = store_dir.glob("s/*/*.log")
    return log


def session_files(store_dir: Path, sid: str) -> list[str]:
    return sorted(p.suffix for p in store_dir.glob(f"s/*/{sid}.*"))


def ask(proc: subprocess.Popen[str], line: str) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


async def check_listings(
    url: str, newest_first: list[str], keys: list[dict[str, str]] = KEYS
) -> None:
    """Every key lists exactly these sessions in this order, whole and one per page."""
    async with SessionManager(url) as mgr:
        for key in keys:
            agent, user = key.get("agent"), key.get("user_id")
            page = await mgr.list(agent=agent, user_id=user)
            infos = page.items
            assert [i.id for i in infos] == newest_first, key
            assert infos == sorted(infos, key=lambda i: (i.updated_at, i.id), reverse=True)
            seen: list[str] = []
            cursor = None
            while True:
                page = await mgr.list(agent=agent, user_id=user, limit=1, cursor=cursor)
                seen += [i.id for i in page.items]
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert seen == newest_first, key


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


@pytest.fixture
def slow_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock that moves 1 µs per reading (for creates and appends alike), so a writer's
    row never ages past REFRESH_US however slowly the test runs."""
    ticks = itertools.count(now_micros())
    monkeypatch.setattr("aixgo_backend_file.store.now_micros", lambda: next(ticks))
    monkeypatch.setattr("aixgo.session.manager.utc_now", lambda: from_micros(next(ticks)))


@pytest.mark.asyncio
@pytest.mark.usefixtures("slow_clock")
async def test_repeated_appends_skip_index_lines_for_the_refresh_interval_only(
    store_url: str, store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that wrote a session's rows at most REFRESH_US ago writes none, even after
    other writers' rows followed its own; listings stay exact throughout."""
    # Appends are stamped 10 s ahead: newer than anything the other manager creates now.
    clock = [now_micros() + 10_000_000]
    monkeypatch.setattr("aixgo_backend_file.store.now_micros", lambda: clock[0])
    async with SessionManager(store_url) as one, SessionManager(store_url) as two:
        s = await one.create("a", user_id="u")
        await s.append_message(Message.user("0"))
        sizes = index_sizes(store_dir)
        assert len(sizes) == 4
        for i in range(5):
            clock[0] += 100
            await s.append_message(Message.user(str(i + 1)))
        assert index_sizes(store_dir) == sizes
        t = await two.create("a", user_id="u")  # another writer: its rows follow s's
        v = await two.create("a", user_id="v")
        grown = index_sizes(store_dir)
        assert grown != sizes
        clock[0] += 100
        await s.append_message(Message.user("6"))  # still within REFRESH_US: no row
        assert index_sizes(store_dir) == grown
        await check_listings(store_url, [s.id, t.id], KEYS[2:])
        await check_listings(store_url, [s.id, v.id, t.id], KEYS[:2])
        # 5 appends and 6 made it 600 us; one more REFRESH_US and it writes each of its keys.
        clock[0] += REFRESH_US - 600 + 1
        await s.append_message(Message.user("7"))
        assert index_sizes(store_dir) == {k: n + ENTRY * (k in sizes) for k, n in grown.items()}
        await check_listings(store_url, [s.id, t.id], KEYS[2:])


@pytest.mark.slow
def test_two_processes_alternating_on_one_users_sessions_keep_listing_order(
    spawn_worker: Spawn,
    store_url: str,
) -> None:
    procs = [spawn_worker("serve", store_url) for _ in range(2)]
    try:
        ids = [ask(p, "create a u") for p in procs]
        # The second is newest; then a pattern with runs (skips) and switches (writes).
        order = [1, 0]
        for step, who in enumerate([0, 0, 1, 0, 1, 1, 1, 0, 1, 0, 0, 0, 1]):
            seq = ask(procs[who], f"append {ids[who]} m{step}")
            assert int(seq) >= 1
            order = [who, 1 - who]
            asyncio.run(check_listings(store_url, [ids[k] for k in order]))
        # Both processes write to the other's session too, across the same keys.
        for step, (who, target) in enumerate([(0, 1), (0, 1), (1, 0), (0, 0), (1, 1)]):
            ask(procs[who], f"append {ids[target]} x{step}")
            order = [target, 1 - target]
            asyncio.run(check_listings(store_url, [ids[k] for k in order]))
    finally:
        for p in procs:
            _, err = p.communicate(timeout=30)  # end of input: the worker exits
            assert p.returncode == 0, err


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


@pytest.mark.asyncio
async def test_listing_notices_another_writers_delete_and_append(store_url: str) -> None:
    """Listing checks a remembered summary against the open log's size: a delete (which
    grows the log before unlinking it) and an append by another writer both show."""
    async with SessionManager(store_url) as one, SessionManager(store_url) as two:
        ids = [(await one.create("a", user_id="u")).id for _ in range(3)]
        await check_listings(store_url, ids[::-1])
        assert [i.id for i in (await one.list(user_id="u")).items] == ids[::-1]
        await two.delete(ids[1])
        await (await two.get(ids[0])).append_message(Message.user("x"))
        page = await one.list(user_id="u")
        assert [i.id for i in page.items] == [ids[0], ids[2]]
        assert page.items[0].message_count == 1


@pytest.mark.asyncio
async def test_the_creator_reads_what_another_writer_appended(store_url: str) -> None:
    """The creating process's view of a new session counts its header line, so catching up
    with another writer's first message is not mistaken for damage."""
    async with SessionManager(store_url) as one, SessionManager(store_url) as two:
        s = await one.create("a", user_id="u")
        await (await two.get(s.id)).append_message(Message.user("x"))
        assert [m.text for m in await s.get_messages()] == ["x"]
        assert (await s.append_message(Message.user("y"))).seq == 2
