"""The read path's shortcuts: a run of records checked as a whole, and records read lately
copied rather than decoded again. Each must return exactly what a first, record-by-record
read would, and refuse what it would refuse."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
from aixgo import Message
from aixgo.errors import CorruptedData
from aixgo.session import SessionManager
from aixgo.session.codec import encode_message
from aixgo.session.kit.recent import OVERHEAD, Recent
from aixgo_backend_file import _record
from aixgo_backend_file.backend import FileBackend

from tests.backend_file.helpers import Spawn, ask


def log_file(store_dir: Path) -> Path:
    (path,) = store_dir.glob("s/*/*.log")
    return path


def kept(mgr: SessionManager, session_id: str) -> int:
    backend = mgr.backend
    assert isinstance(backend, FileBackend)
    return len(backend.store.recent.of(session_id))


@pytest.mark.asyncio
async def test_a_second_process_appends_between_two_reads_and_the_reader_sees_it(
    spawn_worker: Spawn, store_url: str
) -> None:
    async with SessionManager(store_url) as mgr:
        s = await mgr.create("a")
        await s.append_messages([Message.user(f"m{i}") for i in range(5)])
        assert [m.text for m in await s.get_messages(last=3)] == ["m2", "m3", "m4"]
        assert kept(mgr, s.id) == 3
        proc = spawn_worker("serve", store_url)
        try:
            assert ask(proc, f"append {s.id} other") == "6"
            got = await s.get_messages(last=3)
            assert [(m.seq, m.text) for m in got] == [(4, "m3"), (5, "m4"), (6, "other")]
            whole = await s.get_messages()
            assert [m.text for m in whole] == [f"m{i}" for i in range(5)] + ["other"]
            assert ask(proc, f"append {s.id} again") == "7"
            assert [m.text for m in await s.get_messages(last=2)] == ["other", "again"]
        finally:
            proc.terminate()
            proc.communicate()


@pytest.mark.asyncio
@pytest.mark.parametrize("warm", [False, True], ids=["first read", "read before"])
@pytest.mark.parametrize("last", [None, 3])
async def test_a_byte_flipped_inside_the_tail_is_a_typed_error(
    store_url: str, store_dir: Path, warm: bool, last: int | None
) -> None:
    async with SessionManager(store_url) as mgr:
        s = await mgr.create("a")
        await s.append_messages([Message.user(f"text {i}") for i in range(5)])
        if warm:  # the records are kept: the flip must still be noticed
            assert len(await s.get_messages(last=last)) == (last or 5)
            assert kept(mgr, s.id) == (last or 5)
        log = log_file(store_dir)
        data = bytearray(log.read_bytes())
        at = data.index(b'"content":"text 3"') + len(b'"content":"text ')
        data[at] ^= 0x01  # "3" becomes "2": still valid JSON, the checksum alone tells
        log.write_bytes(bytes(data))  # same size: nothing for the reader to catch up
        with pytest.raises(CorruptedData, match=log.name):
            await s.get_messages(last=last)


@pytest.mark.asyncio
async def test_messages_read_again_share_nothing_with_each_other_or_the_store(
    store_url: str,
) -> None:
    async with SessionManager(store_url) as mgr:
        s = await mgr.create("a")
        parts = [{"type": "text", "text": "hi", "extra": {"k": [1]}}]
        await s.append_messages(
            [Message.user(parts, metadata={"tags": ["a"]}) for _ in range(3)]  # type: ignore[arg-type]
        )
        first = await s.get_messages()
        second = await s.get_messages()  # copies of the kept records
        assert first == second
        for a, b in zip(first, second, strict=True):
            assert a is not b
            assert a.metadata is not b.metadata
            assert a.content is not b.content
        assert second[0].metadata is not second[1].metadata
        second[0].metadata["tags"].append("changed")
        second[0].content[0]["extra"]["k"].append(2)  # type: ignore[index]
        third = await s.get_messages()
        assert third == first
        assert [m.metadata for m in third] == [{"tags": ["a"]}] * 3


@pytest.mark.asyncio
async def test_a_restore_moves_the_tail_read_from_kept_records(store_url: str) -> None:
    async with SessionManager(store_url) as mgr:
        s = await mgr.create("a")
        await s.append_messages([Message.user(f"a{i}") for i in range(4)])
        cp = await s.checkpoint()
        await s.append_messages([Message.user(f"b{i}") for i in range(3)])
        assert [m.text for m in await s.get_messages(last=4)] == ["a3", "b0", "b1", "b2"]
        undo = await s.restore(cp.id)
        got = await s.get_messages(last=4)
        assert [(m.seq, m.text) for m in got] == [(1, "a0"), (2, "a1"), (3, "a2"), (4, "a3")]
        await s.append_message(Message.user("c0"))
        got = await s.get_messages(last=3)
        assert [(m.seq, m.text) for m in got] == [(3, "a2"), (4, "a3"), (5, "c0")]
        await s.restore(undo.id)
        assert [m.text for m in await s.get_messages(last=4)] == ["a3", "b0", "b1", "b2"]


@pytest.mark.asyncio
async def test_records_between_the_messages_are_read_around_and_kept(store_url: str) -> None:
    async with SessionManager(store_url) as mgr:
        s = await mgr.create("a")
        for i in range(4):
            await s.append_message(Message.user(f"m{i}"))
            await s.checkpoint()  # a record between every two messages
        want = [f"m{i}" for i in range(4)]
        assert [m.text for m in await s.get_messages()] == want
        assert kept(mgr, s.id) == 4
        assert [m.text for m in await s.get_messages()] == want


def _lines(texts: list[str], first_seq: int = 1) -> list[bytes]:
    return [
        _record.line(
            _record.MESSAGE
            % (0, seq, seq, seq, 1, 7, encode_message(Message.user(t, id=f"id{seq}")))
        )
        for seq, t in enumerate(texts, first_seq)
    ]


def test_a_run_is_read_whole_only_when_every_record_checks_out() -> None:
    lines = _lines(["a", "b", "c"])
    buf = b"".join(lines)
    sizes = [len(x) for x in lines]
    run = _record.message_run(buf, 1, sizes)
    assert run is not None
    assert [Message.model_validate_json(m).text for m in run] == ["a", "b", "c"]
    # Anything else: let the record-by-record check say what is wrong.
    assert _record.message_run(buf, 2, sizes) is None  # seqs do not count up from 2
    assert _record.message_run(buf, 1, sizes[:2]) is None  # more records than entries
    assert _record.message_run(buf, 1, [sizes[0] + 1, sizes[1] - 1, sizes[2]]) is None
    flipped = bytearray(buf)
    flipped[buf.index(b'"content":"b"') + 11] = ord("x")
    assert _record.message_run(bytes(flipped), 1, sizes) is None  # checksum
    other = _record.line(_record.other_payload({"t": "cp", "id": "c"}))
    assert _record.message_run(lines[0] + other + lines[1], 1, sizes[:2]) is None
    assert _record.message_run(buf + b"x", 1, sizes) is None  # bytes left over
    head = lines[1][:9] + b"F" + lines[1][10:]  # an upper-case hex digit in the checksum
    assert _record.message_run(lines[0] + head + lines[2], 1, sizes) is None


def test_a_hostile_run_cannot_pass_two_messages_off_as_one_record() -> None:
    """A payload that holds a newline is two lines to the run check: refused, whatever its
    checksum, so the record-by-record path decides."""
    (line,) = _lines(["a"])
    payload = line[_record.PREFIX : -1].replace(b'"content":"a"', b'"content":\n"a"')
    forged = b"%08x %08x %b\n" % (len(payload), zlib.crc32(payload), payload)
    assert _record.message_run(forged, 1, [len(forged)]) is None


def test_recent_keeps_the_latest_reads_within_its_budget() -> None:
    message = Message.user("x")
    recent = Recent(budget=4 * (100 + OVERHEAD))
    assert recent.limit() == 100 + OVERHEAD
    one = {0: (b"l" * 100, message)}
    recent.keep("a", one, 100 + OVERHEAD)
    recent.keep("b", one, 100 + OVERHEAD)
    recent.keep("c", {0: (b"l", message), 5: (b"l", message)}, 2 + 2 * OVERHEAD)  # too heavy
    assert recent.of("a") == one and recent.of("b") == one and recent.of("c") == {}
    for name in "cdef":
        recent.keep(name, one, 100 + OVERHEAD)
    assert recent.of("a") == {} and recent.of("b") == {}  # least recently read: forgotten
    assert all(recent.of(name) == one for name in "cdef")
    recent.keep("c", {}, 0)  # a read that keeps nothing drops what the session had
    recent.drop("d")
    assert recent.of("c") == {} and recent.of("d") == {}
