"""Where a listing page's summaries come from: each session's tail summary (an extended
attribute of its log, kept by writers) and its header, checked against the log's size; a
summary that does not match the log is never shown, whoever left it so."""

# ruff: noqa: ASYNC240 - tests poke at store files directly, on purpose

from __future__ import annotations

import asyncio
import fcntl
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from aixgo import Message
from aixgo.clock import from_micros, now_micros
from aixgo.session import SessionManager
from aixgo.session.models import SessionInfo
from aixgo_backend_file import FileBackend
from aixgo_backend_file._store import Store


def info(session_id: str, micros: int, metadata: dict[str, str] | None = None) -> SessionInfo:
    when = from_micros(micros)
    return SessionInfo(
        id=session_id,
        agent="a",
        user_id="u",
        created_at=when,
        updated_at=when,
        metadata=metadata or {},
    )


SID = "0123456789abcdef0123456789abcdef"


@pytest.mark.asyncio
async def test_a_session_created_again_after_a_delete_lists_its_new_created_at(
    backend: FileBackend,
) -> None:
    t0 = now_micros() - 10_000_000
    await backend.create_session(info(SID, t0, {"k": "old"}))
    assert [i.created_at for i in (await backend.list_sessions(user_id="u")).items] == [
        from_micros(t0)
    ]
    await backend.delete_session(SID)
    t1 = t0 + 1_000_000  # the same width in the header: the same log size
    await backend.create_session(info(SID, t1, {"k": "new"}))
    page = await backend.list_sessions(user_id="u")
    assert [(i.created_at, i.metadata) for i in page.items] == [(from_micros(t1), {"k": "new"})]
    assert page.items[0].created_at - from_micros(t0) == timedelta(seconds=1)


@pytest.mark.asyncio
async def test_another_process_deleting_and_creating_the_id_again_is_seen(
    store_url: str,
) -> None:
    t0 = now_micros() - 10_000_000
    lister, writer = FileBackend(store_url), FileBackend(store_url)
    try:
        await writer.create_session(info(SID, t0, {"k": "old"}))
        assert [i.metadata for i in (await lister.list_sessions(user_id="u")).items] == [
            {"k": "old"}
        ]
        await writer.delete_session(SID)
        await writer.create_session(info(SID, t0 + 1_000_000, {"k": "new"}))
        page = await lister.list_sessions(user_id="u")
        assert [i.metadata for i in page.items] == [{"k": "new"}]
        assert page.items[0].created_at == from_micros(t0 + 1_000_000)
    finally:
        await lister.close()
        await writer.close()


class Opens:
    """Counts the sessions a listing opened the usual way (locked and caught up) rather
    than summarised from the log's first and last records."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ids: list[str] = []
        real = Store._from_view

        def from_view(store: Store, session_id: str) -> object:
            self.ids.append(session_id)
            return real(store, session_id)

        monkeypatch.setattr(Store, "_from_view", from_view)


async def usual(url: str, session_id: str) -> tuple[SessionInfo, int]:
    """The session's summary as opening it gives, and how many messages it reads back."""
    b = FileBackend(url)
    try:
        return await b.get_session(session_id), len(await b.get_messages(session_id))
    finally:
        await b.close()


async def listed(url: str, **query: str) -> list[SessionInfo]:
    """The first page in a backend that has read nothing yet (as a fresh process)."""
    b = FileBackend(url)
    try:
        return (await b.list_sessions(limit=100, **query)).items  # type: ignore[arg-type]
    finally:
        await b.close()


@pytest.mark.asyncio
async def test_a_cold_page_reads_summaries_without_opening_sessions_and_agrees_with_opening(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = "x" * 20_000  # a header and a last record longer than the first read
    async with SessionManager(store_url) as mgr:
        empty = await mgr.create("a", user_id="u")
        one = await mgr.create("a", user_id="u", metadata={"big": big})
        await one.append_message(Message.user("hello"))
        batch = await mgr.create("a", user_id="u")
        await batch.append_messages([Message.user(f"b{i}") for i in range(3)])
        await batch.append_message(Message.user(big))
        restored = await mgr.create("a", user_id="u")
        for i in range(3):
            await restored.append_message(Message.user(f"r{i}"))
        cp = await restored.checkpoint(label="two")
        await restored.append_message(Message.user("r3"))
        await restored.restore(cp.id)
        await restored.append_message(Message.user("after"))
    opens = Opens(monkeypatch)
    items = await listed(store_url, user_id="u")
    assert opens.ids == []
    assert [i.id for i in items] == [restored.id, batch.id, one.id, empty.id]
    for item in items:
        info, count = await usual(store_url, item.id)
        assert item == info
        assert item.message_count == count
    assert [i.message_count for i in items] == [4, 4, 1, 0]


@pytest.mark.asyncio
async def test_a_checkpoint_last_is_read_by_opening_the_session(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SessionManager(store_url) as mgr:
        s = await mgr.create("a", user_id="u")
        await s.append_message(Message.user("m"))
        await s.checkpoint(label="here")
    opens = Opens(monkeypatch)
    (item,) = await listed(store_url, user_id="u")
    assert opens.ids == [s.id]
    assert (item, item.message_count) == await usual(store_url, s.id)


@pytest.mark.asyncio
async def test_a_torn_tail_or_half_a_batch_lists_what_was_acknowledged(
    store_url: str, store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SessionManager(store_url) as mgr:
        torn = await mgr.create("a", user_id="u")
        await torn.append_message(Message.user("kept"))
        half = await mgr.create("a", user_id="u")
        await half.append_message(Message.user("kept"))
        await half.append_messages([Message.user(f"b{i}") for i in range(3)])
    before = {i.id: i for i in await listed(store_url, user_id="u")}
    (torn_log,) = store_dir.glob(f"s/*/{torn.id}.log")
    with torn_log.open("ab") as f:
        f.write(b"0000004")  # a record torn by a crash
    (half_log,) = store_dir.glob(f"s/*/{half.id}.log")
    lines = half_log.read_bytes().split(b"\n")
    half_log.write_bytes(b"\n".join(lines[:-2]) + b"\n")  # 2 of the batch's 3 lines
    opens = Opens(monkeypatch)
    after = {i.id: i for i in await listed(store_url, user_id="u")}
    assert sorted(opens.ids) == sorted([torn.id, half.id])
    assert after[torn.id] == before[torn.id]
    assert after[half.id].message_count == 1
    assert (after[half.id], 1) == await usual(store_url, half.id)


@pytest.mark.asyncio
async def test_a_log_held_by_a_writer_is_read_by_waiting_for_it(
    store_url: str, store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SessionManager(store_url) as mgr:
        s = await mgr.create("a", user_id="u")
    (log,) = store_dir.glob(f"s/*/{s.id}.log")
    fd = os.open(log, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a writer (or a create) at work
        opens = Opens(monkeypatch)
        b = FileBackend(store_url)
        try:
            waiting = asyncio.get_running_loop().run_in_executor(
                None, lambda: b.store.list_page(None, "u", 10, None)
            )
            await asyncio.sleep(0.2)
            assert not waiting.done()
            fcntl.flock(fd, fcntl.LOCK_UN)
            page = await waiting
        finally:
            await b.close()
    finally:
        os.close(fd)
    assert opens.ids == [s.id]
    assert [i.id for i in page.items] == [s.id]


@pytest.mark.asyncio
async def test_a_page_shows_only_the_sessions_of_its_scope(store_url: str, store_dir: Path) -> None:
    async with SessionManager(store_url) as mgr:
        mine = await mgr.create("a", user_id="me")
        theirs = await mgr.create("a", user_id="them")
    # A line naming another user's session in my index (misplaced, or planted).
    (theirs_line,) = [
        line
        for ix in store_dir.glob("i/u-*.ix")
        for line in ix.read_bytes().splitlines(keepends=True)
        if theirs.id.encode() in line
    ]
    (my_index,) = [ix for ix in store_dir.glob("i/u-*.ix") if mine.id.encode() in ix.read_bytes()]
    with my_index.open("ab") as f:
        f.write(theirs_line)
    assert [i.id for i in await listed(store_url, user_id="me")] == [mine.id]


@pytest.mark.slow
def test_a_writer_killed_at_random_moments_never_lists_wrong(
    spawn_worker: Callable[..., subprocess.Popen[str]], store_url: str
) -> None:
    """kill -9 lands between a log write and its sidecar and listing rows, or inside a
    batch: a page read before anything reopens the session lists what a reopen reads."""
    rng = random.Random(os.environ.get("AIXGO_TEST_SEED", "summaries"))

    async def create() -> str:
        async with SessionManager(store_url) as mgr:
            return (await mgr.create("crash", user_id="u")).id

    sid = asyncio.run(create())
    acked = 0
    for _ in range(8):
        proc = spawn_worker("loop", store_url, sid, str(acked))
        time.sleep(rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        printed = out.split()  # the number of each acknowledged message (a batch's last)
        acked = int(printed[-1]) + 1 if printed else acked
        (item,) = asyncio.run(listed(store_url, user_id="u"))
        info, count = asyncio.run(usual(store_url, sid))
        assert item == info
        assert item.message_count == count
        assert acked <= count <= acked + 3  # at most the write in flight, a batch of three
        acked = count
