"""What a crash or a damaged disk leaves behind, and what the next open makes of it."""

# ruff: noqa: ASYNC240 - tests poke at store files directly, on purpose

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import pytest
from aixgo import Message
from aixgo.errors import CorruptedData, SessionNotFound
from aixgo.session import SessionManager
from aixgo_backend_file._state import IDX


def files(store_dir: Path, ext: str) -> Path:
    (path,) = store_dir.glob(f"s/*/*.{ext}")
    return path


async def seeded(url: str, n: int = 3) -> str:
    async with SessionManager(url) as mgr:
        s = await mgr.create("a", user_id="u")
        for i in range(n):
            await s.append_message(Message.user(f"m{i}", id=f"id{i}"))
        return s.id


async def texts(url: str, sid: str) -> list[str]:
    async with SessionManager(url) as mgr:
        return [m.text for m in await (await mgr.get(sid)).get_messages()]


@pytest.mark.asyncio
async def test_torn_last_record_is_discarded_and_the_store_appends(
    store_url: str, store_dir: Path
) -> None:
    sid = await seeded(store_url)
    log = files(store_dir, "log")
    good = log.read_bytes()
    last = good.rstrip(b"\n").rsplit(b"\n", 1)[1] + b"\n"
    with log.open("ab") as f:
        f.write(last[: len(last) // 2])  # a record cut short by a crash
    assert await texts(store_url, sid) == ["m0", "m1", "m2"]
    assert log.read_bytes() == good  # cut off under the lock
    async with SessionManager(store_url) as mgr:
        s = await mgr.get(sid)
        stored = await s.append_message(Message.user("m3"))
        assert stored.seq == 4
    assert await texts(store_url, sid) == ["m0", "m1", "m2", "m3"]


@pytest.mark.asyncio
async def test_a_recovered_torn_tail_and_a_repair_are_logged(
    store_url: str, store_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from aixgo_backend_file.repair import repair

    sid = await seeded(store_url)
    log = files(store_dir, "log")
    size = log.stat().st_size
    with log.open("ab") as f:
        f.write(b"0000004")  # a record torn by a crash
    caplog.set_level(logging.INFO, logger="aixgo.file")
    assert await texts(store_url, sid) == ["m0", "m1", "m2"]
    (cut,) = [r for r in caplog.records if r.name == "aixgo.file"]
    assert cut.levelno == logging.INFO
    assert cut.getMessage() == (
        f"{log}: cutting off a tail torn by a crash (7 bytes from byte {size}; never acknowledged)"
    )
    assert "m0" not in cut.getMessage()  # never message content
    caplog.clear()
    repair(store_url)
    (done,) = [r.getMessage() for r in caplog.records if r.name == "aixgo.file"]
    assert done == f"repaired {store_url}: 1 sessions, 4 listing indexes rebuilt"


@pytest.mark.asyncio
async def test_garbage_tail_after_power_loss_is_discarded(store_url: str, store_dir: Path) -> None:
    sid = await seeded(store_url)
    log = files(store_dir, "log")
    with log.open("ab") as f:
        f.write(b"\0" * 300)  # the file grew but the data never reached the disk
    assert await texts(store_url, sid) == ["m0", "m1", "m2"]


@pytest.mark.asyncio
async def test_half_a_batch_is_discarded_whole(store_url: str, store_dir: Path) -> None:
    async with SessionManager(store_url) as mgr:
        s = await mgr.create("a")
        await s.append_message(Message.user("before"))
        await s.append_messages([Message.user(f"b{i}") for i in range(3)])
    log = files(store_dir, "log")
    lines = log.read_bytes().split(b"\n")
    log.write_bytes(b"\n".join(lines[:-2]) + b"\n")  # only 2 of the batch's 3 lines
    files(store_dir, "idx").write_bytes(b"")  # as if the writer died before its sidecar
    assert await texts(store_url, s.id) == ["before"]


@pytest.mark.asyncio
async def test_damaged_record_in_the_middle_names_file_and_line(
    store_url: str, store_dir: Path
) -> None:
    sid = await seeded(store_url)
    log = files(store_dir, "log")
    data = bytearray(log.read_bytes())
    second = data.index(b'"content":"m1"')
    data[second + 12] = ord("X")  # bit rot inside message 2 (line 3)
    log.write_bytes(bytes(data))
    with pytest.raises(CorruptedData, match=rf"{log.name}, line 3"):
        await texts(store_url, sid)
    # Without sidecars the full scan finds it too, and still refuses to skip past it.
    files(store_dir, "idx").unlink()
    with pytest.raises(CorruptedData, match=rf"{log.name}, line 3"):
        await texts(store_url, sid)
    assert log.read_bytes() == bytes(data)  # nothing after the damage was cut off


@pytest.mark.asyncio
async def test_sidecars_are_rebuilt_from_the_log(store_url: str, store_dir: Path) -> None:
    async with SessionManager(store_url) as mgr:
        s = await mgr.create("a")
        await s.append_messages([Message.user(f"m{i}") for i in range(5)])
        cp = await s.checkpoint(label="x")
        await s.append_message(Message.user("gone"))
        await s.restore(cp.id)
        await s.append_message(Message.user("m5"))
    want = await texts(store_url, s.id)
    idx, meta = files(store_dir, "idx"), files(store_dir, "meta")
    idx_bytes, meta_bytes = idx.read_bytes(), meta.read_bytes()
    for damage in (lambda: idx.unlink(), lambda: meta.unlink(), lambda: idx.write_bytes(b"x")):
        damage()
        assert await texts(store_url, s.id) == want
        assert idx.read_bytes() == idx_bytes and meta.read_bytes() == meta_bytes
    # The writer died between the log line and its sidecar entry.
    idx.write_bytes(idx_bytes[:-32])
    assert await texts(store_url, s.id) == want
    assert idx.read_bytes() == idx_bytes


@pytest.mark.asyncio
async def test_delete_interrupted_after_its_record_finishes_on_next_open(
    store_url: str, store_dir: Path
) -> None:
    sid = await seeded(store_url)
    log = files(store_dir, "log")
    kept = log.read_bytes()
    async with SessionManager(store_url) as mgr:
        await mgr.delete(sid)
    assert not list(store_dir.glob("s/*/*"))
    # Replay a crash right after the delete record was written: the files are still there.
    from aixgo_backend_file import _record as record

    log.write_bytes(kept + record.line(b'{"t":"deleted","ts":1}'))
    async with SessionManager(store_url) as mgr:
        with pytest.raises(SessionNotFound):
            await mgr.get(sid)
        assert (await mgr.list()).items == []
    assert not log.exists()


@pytest.mark.asyncio
async def test_restore_survives_reopen_and_keeps_the_discarded_tail(store_url: str) -> None:
    async with SessionManager(store_url) as mgr:
        s = await mgr.create("a")
        await s.append_message(Message.user("keep"))
        cp = await s.checkpoint()
        await s.append_message(Message.user("discard"))
        undo = await s.restore(cp.id)
    assert await texts(store_url, s.id) == ["keep"]
    async with SessionManager(store_url) as mgr:
        s2 = await mgr.get(s.id)
        await s2.restore(undo.id)
        assert [m.text for m in await s2.get_messages()] == ["keep", "discard"]


@pytest.mark.asyncio
async def test_idempotent_retry_after_reopen_and_in_another_process_view(store_url: str) -> None:
    msg = Message.user("once")
    async with SessionManager(store_url) as a, SessionManager(store_url) as b:
        s = await a.create("a")
        first = await s.append_message(msg)
        again = await (await b.get(s.id)).append_message(msg)  # another "process" retries
        assert again == first and again.seq == 1
        assert len(await s.get_messages()) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("damage", ["offset", "swapped", "outside"])
async def test_a_damaged_idx_entry_is_read_around_from_the_log(
    store_url: str, store_dir: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    """The .idx is derived data: an entry gone bad is not a damaged log. The read is served
    from the log, and a warning says the index needs repair."""
    async with SessionManager(store_url) as mgr:
        s = await mgr.create("a")
        await s.append_messages([Message.user(f"m{i}", id=f"id{i}") for i in range(6)])
        await s.append_message(Message.user("m6", id="id6"))  # the last entry stays good
    idx = files(store_dir, "idx")
    data = bytearray(idx.read_bytes())
    second, third = slice(IDX.size, 2 * IDX.size), slice(2 * IDX.size, 3 * IDX.size)
    if damage == "offset":
        data[IDX.size] ^= 0x01  # message 2's entry points one byte off
    elif damage == "swapped":  # both point at a whole record of the right length
        data[second], data[third] = data[third], data[second]
    else:
        data[IDX.size : IDX.size + 8] = b"\xff" * 8
    idx.write_bytes(bytes(data))
    want = [f"m{i}" for i in range(7)]
    caplog.set_level(logging.WARNING, logger="aixgo.file")
    async with SessionManager(store_url) as mgr:
        s = await mgr.get(s.id)
        got = await s.get_messages()
        assert [m.text for m in got] == want
        assert [m.seq for m in got] == list(range(1, 8))
        assert [m.text for m in await s.get_messages(last=6)] == want[1:]
        assert (await s.append_message(Message.user("m1", id="id1"))).seq == 2  # a retry
    warned = [r.getMessage() for r in caplog.records if r.name == "aixgo.file"]
    assert any(str(idx) in w and "index needs repair" in w for w in warned), warned
    assert idx.read_bytes() == bytes(data)  # reading wrote nothing; repair rewrites it


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("was", "now", "error"),
    [
        (b'"role":"user"', b'"role":"tool"', "tool_call_id"),
        (b'"metadata":{}', b'"metadata":[]', ""),
        (b'"content":"m1"', b'"content":[1]', ""),
    ],
    ids=["tool without call id", "metadata not an object", "content part not an object"],
)
async def test_a_hostile_record_with_a_valid_checksum_is_refused_not_half_read(
    store_url: str, store_dir: Path, was: bytes, now: bytes, error: str
) -> None:
    sid = await seeded(store_url)
    log = files(store_dir, "log")
    lines = log.read_bytes().split(b"\n")
    k = next(i for i, line in enumerate(lines) if b'"content":"m1"' in line)
    payload = lines[k][18:].replace(was, now)  # same length: the index still points at it
    lines[k] = b"%08x %08x %b" % (len(payload), zlib.crc32(payload), payload)
    log.write_bytes(b"\n".join(lines))
    async with SessionManager(store_url) as mgr:
        s = await mgr.get(sid)
        for last in (None, 2, 3):
            with pytest.raises(CorruptedData, match=f"is not valid: .*{error}"):
                await s.get_messages(last=last)
        assert [m.text for m in await s.get_messages(last=1)] == ["m2"]
