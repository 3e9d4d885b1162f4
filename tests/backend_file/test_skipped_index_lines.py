"""Listing-index lines skipped while a session's own were written moments ago: appends within
the refresh interval write none, and listings stay exact across writers and processes."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest
from aixgo import Message
from aixgo.clock import from_micros, now_micros
from aixgo.session import SessionManager
from aixgo_backend_file._index import ENTRY, REFRESH_US

from .helpers import KEYS, Spawn, ask, check_listings


def index_sizes(store_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in store_dir.glob("i/*.ix")}


@pytest.fixture
def slow_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock that moves 1 µs per reading (for creates and appends alike), so a writer's
    row never ages past REFRESH_US however slowly the test runs."""
    ticks = itertools.count(now_micros())
    monkeypatch.setattr("aixgo_backend_file._store.now_micros", lambda: next(ticks))
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
    monkeypatch.setattr("aixgo_backend_file._store.now_micros", lambda: clock[0])
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
