"""``durability=fsync`` with group commit: writes in flight at once share an ``fdatasync``,
and nothing is acknowledged before a sync that covers it — in one process and across several."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aixgo import Message
from aixgo.errors import BackendError
from aixgo.session import SessionManager

#: The spawn_worker fixture (conftest.py): starts worker.py and waits until it is ready.
Spawn = Callable[..., "subprocess.Popen[str]"]
#: The release_workers fixture (conftest.py): sends them "go", returns their outputs.
Release = Callable[[list["subprocess.Popen[str]"]], list[str]]


class SyncSpy:
    """Counts real ``fdatasync`` calls; per inode, how many bytes the finished ones cover
    (the file's size when the latest began)."""

    def __init__(self) -> None:
        self.calls = 0
        self.covered: dict[int, int] = {}
        self.real = os.fdatasync

    def __call__(self, fd: int) -> None:
        st = os.fstat(fd)
        self.real(fd)
        self.calls += 1
        self.covered[st.st_ino] = max(self.covered.get(st.st_ino, 0), st.st_size)

    def covers(self, log: Path) -> int:
        return self.covered.get(log.stat().st_ino, 0)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> SyncSpy:
    s = SyncSpy()
    monkeypatch.setattr(os, "fdatasync", s)
    return s


def record_ends(log: Path) -> dict[str, int]:
    """Where each whole record of ``log`` ends, by message or checkpoint id. A last line
    without its newline is a record a kill -9 tore (a write the kernel stopped at a page
    boundary): never acknowledged, and cut off by the next open."""
    out: dict[str, int] = {}
    pos = 0
    for line in log.read_bytes().splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        pos += len(line)
        rec = json.loads(line[18:])
        if rec["t"] == "m":
            out[rec["m"]["id"]] = pos
        elif rec["t"] == "cp":
            out[rec["id"]] = pos
        elif rec["t"] == "restore":
            out[rec["undo"]] = pos
    return out


def log_of(store_dir: Path, session_id: str) -> Path:
    (log,) = store_dir.glob(f"s/*/{session_id}.log")
    return log


@pytest.mark.asyncio
async def test_fifty_concurrent_appends_to_one_session_share_a_sync(
    store_url: str, store_dir: Path, spy: SyncSpy
) -> None:
    url = store_url + "?durability=fsync"
    async with SessionManager(url) as mgr:
        s = await mgr.create("a", user_id="u")
        log = log_of(store_dir, s.id)
        spy.calls = 0
        acked: dict[str, int] = {}  # message id -> bytes synced when it was acknowledged

        async def append(i: int) -> int:
            stored = await s.append_message(Message.user(str(i), id=f"m{i}"))
            acked[stored.id] = spy.covers(log)
            assert stored.seq is not None
            return stored.seq

        seqs = await asyncio.gather(*(append(i) for i in range(50)))
        assert sorted(seqs) == list(range(1, 51))
        assert spy.calls <= 3, f"{spy.calls} fdatasyncs for 50 appends in flight at once"
        ends = record_ends(log)
        for mid, synced in acked.items():
            assert ends[mid] <= synced, f"{mid} acknowledged before a sync covered it"
    async with SessionManager(url) as mgr:
        msgs = await (await mgr.get(s.id)).get_messages()
        assert sorted(m.text for m in msgs) == sorted(str(i) for i in range(50))
        assert [m.seq for m in msgs] == list(range(1, 51))


@pytest.mark.asyncio
async def test_appends_in_flight_to_many_sessions_sync_each_log_once_per_group(
    store_url: str, store_dir: Path, spy: SyncSpy
) -> None:
    url = store_url + "?durability=fsync"
    async with SessionManager(url) as mgr:
        sessions = [await mgr.create("a", user_id=f"u{k}") for k in range(10)]
        spy.calls = 0
        acked: list[tuple[str, str, int]] = []

        async def append(k: int, i: int) -> None:
            s = sessions[k]
            stored = await s.append_message(Message.user(f"{k}.{i}", id=f"m{k}.{i}"))
            acked.append((s.id, stored.id, spy.covers(log_of(store_dir, s.id))))

        await asyncio.gather(*(append(k, i) for i in range(5) for k in range(10)))
        assert spy.calls <= 20, f"{spy.calls} fdatasyncs for 50 appends to 10 sessions"
        for sid, mid, synced in acked:
            assert record_ends(log_of(store_dir, sid))[mid] <= synced
    async with SessionManager(url) as mgr:
        for k, s in enumerate(sessions):
            texts = [m.text for m in await (await mgr.get(s.id)).get_messages()]
            assert sorted(texts) == [f"{k}.{i}" for i in range(5)]


@pytest.mark.asyncio
async def test_checkpoints_and_restores_in_flight_are_acknowledged_after_their_sync(
    store_url: str, store_dir: Path, spy: SyncSpy
) -> None:
    url = store_url + "?durability=fsync"
    async with SessionManager(url) as mgr:
        s = await mgr.create("a")
        first = await s.append_message(Message.user("first"))
        base = await s.checkpoint(label="base")
        log = log_of(store_dir, s.id)
        spy.calls = 0

        async def checkpoint(i: int) -> tuple[str, int]:
            cp = await s.checkpoint(label=str(i))
            return cp.id, spy.covers(log)

        async def restore() -> tuple[str, int]:
            undo = await s.restore(base.id)
            return undo.id, spy.covers(log)

        async def append(i: int) -> tuple[str, int]:
            m = await s.append_message(Message.user(str(i)))
            return m.id, spy.covers(log)

        done = await asyncio.gather(
            *(checkpoint(i) for i in range(5)), restore(), *(append(i) for i in range(5))
        )
        assert spy.calls <= 3
        ends = record_ends(log)
        for rid, synced in done:
            assert ends[rid] <= synced
    async with SessionManager(url) as mgr:
        again = await mgr.get(s.id)
        assert len(await again.list_checkpoints()) == 7  # base, five, the restore's undo
        assert (await again.get_messages())[0].id == first.id


@pytest.mark.asyncio
async def test_a_lone_writer_syncs_once_per_write(
    store_url: str, store_dir: Path, spy: SyncSpy
) -> None:
    async with SessionManager(store_url + "?durability=fsync") as mgr:
        s = await mgr.create("a")
        spy.calls = 0
        for i in range(5):
            m = await s.append_message(Message.user(str(i)))
            assert record_ends(log_of(store_dir, s.id))[m.id] <= spy.covers(log_of(store_dir, s.id))
        await s.checkpoint()
        assert spy.calls == 6


@pytest.mark.asyncio
async def test_an_idempotent_repeat_is_synced_unless_this_process_synced_it(
    store_url: str, spy: SyncSpy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A repeat returns the stored copy as acknowledged: its writer may have died between
    writing and syncing it, so the log is synced before the answer unless this process has
    synced it since."""
    url = store_url + "?durability=fsync"
    async with SessionManager(url) as mgr, SessionManager(url) as other:
        s = await mgr.create("a")
        one, two = Message.user("1"), Message.user("2")
        await s.append_messages([one, two])
        spy.calls = 0
        assert (await s.append_message(one)).seq == 1
        assert [m.seq for m in await s.append_messages([one, two])] == [1, 2]
        assert spy.calls == 0  # this process synced them when it wrote them
        # Another writer whose sync never happened (as if it died right after writing).
        three = Message.user("3")
        monkeypatch.setattr(os, "fdatasync", lambda fd: None)
        await (await other.get(s.id)).append_message(three)
        monkeypatch.setattr(os, "fdatasync", spy)
        assert (await s.append_message(three)).seq == 3
        assert spy.calls == 1
        assert (await s.append_message(three)).seq == 3
        assert spy.calls == 1


@pytest.mark.asyncio
async def test_a_failed_sync_fails_every_write_it_was_to_cover(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = store_url + "?durability=fsync"
    async with SessionManager(url) as mgr:
        s = await mgr.create("a")

        def broken(fd: int) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "fdatasync", broken)
        got = await asyncio.gather(
            *(s.append_message(Message.user(str(i))) for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(g, BackendError) for g in got), got
        monkeypatch.undo()
        # The session is reopened: what was written is there, and it takes appends again.
        assert len(await s.get_messages()) == 3
        assert (await s.append_message(Message.user("after"))).seq == 4
        # A lone writer, which syncs inline, fails the same way.
        monkeypatch.setattr(os, "fdatasync", broken)
        with pytest.raises(BackendError, match="fdatasync"):
            await s.append_message(Message.user("alone"))
        with pytest.raises(BackendError, match="fdatasync"):
            await s.checkpoint()
        monkeypatch.undo()
        assert [m.text for m in await s.get_messages(last=2)] == ["after", "alone"]
        assert (await s.append_message(Message.user("last"))).seq == 6
        assert len(await s.list_checkpoints()) == 1


@pytest.mark.asyncio
async def test_sidecars_and_index_rows_past_the_logs_synced_end_are_ignored(
    store_url: str, store_dir: Path
) -> None:
    """Sidecar entries and listing rows are written before the log is synced: after a power
    cut they may point past what the log kept. Loading checks them against the log."""
    url = store_url + "?durability=fsync"
    async with SessionManager(url) as mgr:
        s = await mgr.create("a", user_id="u")
        await s.append_messages([Message.user(f"m{i}") for i in range(3)])
        kept = await s.checkpoint(label="kept")
        log = log_of(store_dir, s.id)
        durable = log.stat().st_size
        # What a group in flight wrote when the power went: log lines (lost), sidecar
        # entries and index rows (kept).
        await s.append_message(Message.user("lost 1"))
        await s.checkpoint(label="lost")
        await s.append_messages([Message.user("lost 2"), Message.user("lost 3")])
        t = await mgr.create("a", user_id="u")
    with log.open("r+b") as f:
        f.truncate(durable)
    idx, meta = log.with_suffix(".idx"), log.with_suffix(".meta")
    assert idx.stat().st_size == 6 * 40 and meta.read_bytes().count(b'"cp"') == 2
    for _ in range(2):  # the repaired state also survives the next open
        async with SessionManager(url) as mgr:
            again = await mgr.get(s.id)
            assert [m.text for m in await again.get_messages()] == ["m0", "m1", "m2"]
            assert [m.seq for m in await again.get_messages(last=2)] == [2, 3]
            assert [c.id for c in await again.list_checkpoints()] == [kept.id]
            assert (await again.info()).message_count == 3
            page = await mgr.list(user_id="u")
            assert {i.id for i in page.items} == {s.id, t.id}
    async with SessionManager(url) as mgr:
        again = await mgr.get(s.id)
        assert (await again.append_message(Message.user("m3"))).seq == 4
        assert [m.text for m in await again.get_messages(last=2)] == ["m2", "m3"]


async def new_session(url: str) -> str:
    async with SessionManager(url) as mgr:
        return (await mgr.create("a", user_id="u")).id


def parse_acks(out: str) -> tuple[list[tuple[str, int, int]], int | None]:
    acks: list[tuple[str, int, int]] = []
    syncs = None
    for line in out.split("\n")[:-1]:  # a kill may leave the last line unfinished
        parts = line.split()
        if parts[0] == "syncs":
            syncs = int(parts[1])
        else:
            acks.append((parts[0], int(parts[1]), int(parts[2])))
    return acks, syncs


@pytest.mark.slow
def test_three_processes_with_concurrent_tasks_acknowledge_only_synced_appends(
    spawn_worker: Spawn, release_workers: Release, store_url: str, store_dir: Path
) -> None:
    url = store_url + "?durability=fsync"
    sid = asyncio.run(new_session(url))
    procs = [spawn_worker("tasks", url, sid, f"w{p}", "20", "8") for p in range(3)]
    results = [parse_acks(out) for out in release_workers(procs)]
    ends = record_ends(log_of(store_dir, sid))
    seqs = []
    for acks, syncs in results:
        assert len(acks) == 8 * 20
        assert syncs is not None and syncs < len(acks), (syncs, len(acks))
        for mid, seq, synced in acks:
            assert ends[mid] <= synced, f"{mid} acknowledged before its bytes were synced"
            seqs.append(seq)
    assert sorted(seqs) == list(range(1, 3 * 8 * 20 + 1))


@pytest.mark.slow
def test_kill_9_amid_concurrent_fsync_appends_loses_no_acknowledged_message(
    spawn_worker: Spawn, store_url: str, store_dir: Path
) -> None:
    url = store_url + "?durability=fsync"
    rng = random.Random(os.environ.get("AIXGO_TEST_SEED", "group-kill-9"))
    sid = asyncio.run(new_session(url))
    acked: dict[str, int] = {}
    for round_ in range(8):
        proc = spawn_worker("tasks", url, sid, f"r{round_}", "0", "6")
        time.sleep(rng.uniform(0.02, 0.15))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err
        acks, _ = parse_acks(out)
        ends = record_ends(log_of(store_dir, sid))
        for mid, seq, synced in acks:
            assert ends[mid] <= synced
            acked[mid] = seq

        async def check() -> None:
            async with SessionManager(url) as mgr:
                msgs = await (await mgr.get(sid)).get_messages()
                assert [m.seq for m in msgs] == list(range(1, len(msgs) + 1))
                got = {m.id: m.seq for m in msgs}
                for mid, seq in acked.items():
                    assert got.get(mid) == seq, mid

        asyncio.run(check())
    assert len(acked) > 50  # the kills really landed among appends


# GroupCommit reads asyncio's private run queue (``loop._ready``) to tell a lone writer (sync
# at once) from one with others about to write (yield first, share the sync). Pinned here on
# every Python the suite runs on (the packages allow >= 3.11): if an asyncio drops or changes
# it, this fails, and the code's fallback (always yield and group) still syncs every write
# before it is acknowledged, only a lone writer pays a loop turn more.
@pytest.mark.asyncio
async def test_asyncios_run_queue_is_what_group_commit_reads() -> None:
    from aixgo_backend_file._commit import GroupCommit

    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)
    assert isinstance(ready, collections.deque), "asyncio's run queue moved: see the comment"
    commit = GroupCommit(threading.RLock(), lambda log: None)
    await asyncio.sleep(0)  # whatever the test runner queued has run
    assert not ready and commit.alone()  # nothing queued: a lone writer syncs at once
    other = loop.create_task(asyncio.sleep(0))  # another task about to run
    assert ready and not commit.alone()
    await other
    loop.call_soon(lambda: None)  # any callback queued counts too
    assert not commit.alone()
    await asyncio.sleep(0)
    assert commit.alone()
