"""Real processes: kill -9 at random moments, and several writers on one session at once."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aixgo.session import SessionManager

#: The spawn_worker fixture (conftest.py): starts worker.py and waits until it is ready.
Spawn = Callable[..., "subprocess.Popen[str]"]
#: The release_workers fixture (conftest.py): sends them "go", returns their outputs.
Release = Callable[[list["subprocess.Popen[str]"]], list[str]]


async def new_session(url: str) -> str:
    async with SessionManager(url) as mgr:
        return (await mgr.create("crash", user_id="u")).id


async def texts(url: str, session_id: str) -> list[str]:
    async with SessionManager(url) as mgr:
        s = await mgr.get(session_id)
        msgs = await s.get_messages()
        assert [m.seq for m in msgs] == list(range(1, len(msgs) + 1))
        return [m.text for m in msgs]


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_no_acknowledged_message(
    spawn_worker: Spawn, store_url: str
) -> None:
    rng = random.Random(os.environ.get("AIXGO_TEST_SEED", "kill-9"))
    sid = asyncio.run(new_session(store_url))
    stored: list[str] = []
    kills = 0
    while kills < 35:
        proc = spawn_worker("loop", store_url, sid, str(len(stored)))
        time.sleep(rng.uniform(0.0, 0.04))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err
        kills += 1
        acked = [int(x) for x in out.split()]
        now = asyncio.run(texts(store_url, sid))
        # Everything acknowledged is there, in order, with nothing invented before it.
        assert now[: len(stored)] == stored
        assert now == [str(i) for i in range(len(now))]
        if acked:
            assert len(now) > acked[-1], (acked[-1], len(now))
        # The kill lands on a boundary: at most the batch in flight is extra.
        stored = now
    assert len(stored) > 100  # the kills really landed among appends
    # The store still opens and appends after all that.
    proc = spawn_worker("loop", store_url, sid, str(len(stored)))
    time.sleep(0.05)
    proc.terminate()
    proc.communicate()
    final = asyncio.run(texts(store_url, sid))
    assert final == [str(i) for i in range(len(final))]


@pytest.mark.slow
def test_four_processes_append_500_each_to_one_session(
    spawn_worker: Spawn, release_workers: Release, store_url: str
) -> None:
    sid = asyncio.run(new_session(store_url))
    procs = [spawn_worker("append", store_url, sid, f"w{k}", "500") for k in range(4)]
    outs = [out.split() for out in release_workers(procs)]
    seqs = [int(x) for out in outs for x in out]
    assert sorted(seqs) == list(range(1, 2001))  # no loss, no duplicate
    for out in outs:  # each writer saw its own seqs strictly increase
        mine = [int(x) for x in out]
        assert mine == sorted(mine) and len(set(mine)) == 500

    async def check() -> None:
        async with SessionManager(store_url) as mgr:
            s = await mgr.get(sid)
            msgs = await s.get_messages()
            assert [m.seq for m in msgs] == list(range(1, 2001))
            for k in range(4):
                mine = [m.text for m in msgs if m.id.startswith(f"w{k}-")]
                assert mine == [f"w{k} {i}" for i in range(500)]
            got = {m.id: m.seq for m in msgs}
            for k, out in enumerate(outs):
                assert [got[f"w{k}-{i}"] for i in range(500)] == [int(x) for x in out]
            assert (await s.info()).message_count == 2000
            assert [m.seq for m in await s.get_messages(last=3)] == [1998, 1999, 2000]

    asyncio.run(check())
    log = next(Path(store_url[len("file://") :]).glob("s/*/*.log"))
    lines = log.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 2002  # header + 2000 whole lines


@pytest.mark.slow
def test_concurrent_creates_from_four_processes(
    spawn_worker: Spawn, release_workers: Release, store_url: str
) -> None:
    asyncio.run(new_session(store_url))  # the store exists; processes race on shards/indexes
    procs = [spawn_worker("create", store_url, "agent", "user-1", "100") for _ in range(4)]
    ids = [x for out in release_workers(procs) for x in out.split()]
    assert len(ids) == len(set(ids)) == 400

    async def check() -> None:
        async with SessionManager(store_url) as mgr:
            seen: list[str] = []
            cursor = None
            while True:
                page = await mgr.list(agent="agent", user_id="user-1", limit=37, cursor=cursor)
                seen += [i.id for i in page.items]
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert sorted(seen) == sorted(ids)

    asyncio.run(check())
