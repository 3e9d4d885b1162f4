"""Scale: the biggest message, a million-message session, ten thousand sessions of one user."""

from __future__ import annotations

import os
import threading
import tracemalloc
from pathlib import Path

import pytest
from aixgo import Message
from aixgo.session import SessionManager
from aixgo.session.codec import MAX_MESSAGE_BYTES, encode_message
from aixgo_backend_file._index import _SCAN, ENTRY, REFRESH_US, SLACK_US, query_key

TEXT = "Could you find me a flight from Oslo to Lisbon next Friday, morning departure?"


@pytest.mark.asyncio
async def test_a_16_mib_message_round_trips(store_url: str) -> None:
    overhead = len(encode_message(Message.user("", id="big")))
    big = Message.user("x" * (MAX_MESSAGE_BYTES - overhead), id="big")
    assert len(encode_message(big)) == MAX_MESSAGE_BYTES
    async with SessionManager(store_url) as mgr:
        s = await mgr.create("a")
        await s.append_messages([Message.user("before"), big, Message.user("after")])
    async with SessionManager(store_url) as mgr:  # cold open: parsed from disk
        s2 = await mgr.get(s.id)
        got = await s2.get_messages()
        assert [len(m.text) for m in got] == [6, len(big.text), 5]
        assert got[1] == big.model_copy(update={"seq": 2})
        assert (await s2.append_message(big)).seq == 2  # idempotent, found by reading it back


async def fill(mgr: SessionManager, n: int, batch: int = 10_000) -> str:
    s = await mgr.create("big", user_id="u")
    i = 0
    while i < n:
        k = min(batch, n - i)
        msgs = [Message.user(f"{TEXT} {i + j}") for j in range(k)]
        await s.append_messages(msgs)
        i += k
    return s.id


class ReadCounter:
    """Bytes read through ``os.pread``/``os.read`` by this thread while active (the file
    backend reads only with these). A deterministic measure of work, unlike wall-clock
    time on a shared machine, and unlike ``/proc/self/io``, blind to other threads (a
    leftover reader thread of an earlier test once pushed a page over its bound)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        thread = threading.get_ident()
        real_pread, real_read = os.pread, os.read

        def pread(fd: int, n: int, offset: int) -> bytes:
            data = real_pread(fd, n, offset)
            if threading.get_ident() == thread:
                self.count += len(data)
            return data

        def read(fd: int, n: int) -> bytes:
            data = real_read(fd, n)
            if threading.get_ident() == thread:
                self.count += len(data)
            return data

        monkeypatch.setattr(os, "pread", pread)
        monkeypatch.setattr(os, "read", read)


async def cold_tail(url: str, sid: str, reads: ReadCounter) -> tuple[int, int, list[Message]]:
    """Open the store cold and read the last 100 messages: the bytes read from files for it,
    and its peak Python memory."""
    async with SessionManager(url) as mgr:
        tracemalloc.start()
        before = reads.count
        s = await mgr.get(sid)
        msgs = await s.get_messages(last=100)
        read = reads.count - before
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return read, peak, msgs


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_million_messages_open_and_serve_the_tail_without_reading_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"file://{tmp_path}/store"
    async with SessionManager(url) as mgr:
        small = await fill(mgr, 1_000)
        large = await fill(mgr, 1_000_000)
        s = await mgr.get(large)
        cp = await s.checkpoint()  # a restore in the history, so the tail spans two branches
        await s.append_message(Message.user("dropped"))
        await s.restore(cp.id)
        await s.append_messages([Message.user(f"tail {i}") for i in range(10)])
    log = next(p for p in (tmp_path / "store").glob("s/*/*.log") if p.stem == large)
    assert log.stat().st_size > 150_000_000
    reads = ReadCounter(monkeypatch)
    read_small, _, _ = await cold_tail(url, small, reads)
    read_large, peak, msgs = await cold_tail(url, large, reads)
    assert [m.seq for m in msgs] == list(range(1_000_011 - 100, 1_000_011))
    assert msgs[-1].text == "tail 9" and msgs[-11].text.endswith(" 999999")
    assert peak < 4_000_000, f"peak {peak:,} bytes: the tail read must not load the log"
    # The work does not grow with the history: about as many bytes for 1,000,010 messages
    # as for 1,000 (the log alone is over 150 MB).
    assert 0 < read_large < 2 * read_small + 64_000, (read_small, read_large)


def index_times(path: Path) -> list[int]:
    """The times of a listing index's rows, in file order."""
    return [int(line[:16], 16) for line in path.read_bytes().splitlines()]


@pytest.mark.slow
@pytest.mark.asyncio
async def test_ten_thousand_sessions_of_one_user_page_by_cursor(
    store_url: str, store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SessionManager(store_url) as mgr:
        ids = [(await mgr.create("lister", user_id="u-10k")).id for _ in range(10_000)]
        await mgr.create("lister", user_id="someone-else")
        first = await mgr.list(agent="lister", user_id="u-10k", limit=50)
        assert [i.id for i in first.items] == ids[::-1][:50]
    async with SessionManager(store_url) as mgr:  # cold: every row checked against its log
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            page = await mgr.list(user_id="u-10k", limit=500, cursor=cursor)
            seen += [i.id for i in page.items]
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        assert pages == 20 and seen == ids[::-1]
        reads = ReadCounter(monkeypatch)
        page = await mgr.list(agent="lister", user_id="u-10k", limit=50)
        read = reads.count
        assert len(page.items) == 50 and page.next_cursor is not None
        # A page reads the index from its end, not all 10,000 rows: back to the rows that
        # may be SLACK_US + REFRESH_US out of order with the 51st session's, a chunk at a
        # time. How many rows that is depends on how fast the sessions were created.
        times = index_times(store_dir / "i" / f"{query_key('lister', 'u-10k')}.ix")
        assert len(times) == 10_000
        oldest = times[-51] - SLACK_US - REFRESH_US
        window = sum(1 for ts in times if ts >= oldest)
        assert window + 2 * _SCAN < 10_000, "the sessions were created implausibly fast"
        assert 0 < read <= (window + _SCAN) * ENTRY, f"the first page read {read:,} bytes"
