"""A real full disk (a small tmpfs filled to ENOSPC): writes are refused whole with a
BackendError, reads keep working in this process and in fresh ones, and everything works
again, with nothing acknowledged lost, once space is freed."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aixgo import Message
from aixgo.errors import BackendError
from aixgo.session import SessionManager
from aixgo_backend_file._index import ENTRY
from aixgo_backend_file.repair import repair

if TYPE_CHECKING:
    from conftest import SmallDisk  # the small_disk fixture's type

WORKER = str(Path(__file__).with_name("worker.py"))

#: The file system's page: tmpfs gives files space a page at a time.
PAGE = 4096
#: Bigger than a page: a write of it needs space the full disk does not have.
BIG = "x" * 6000


def files(store: Path) -> dict[str, bytes]:
    """Every non-empty file of the store, by path (an empty sidecar reads as a missing one)."""
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and p.stat().st_size
    }


def dump(url: str) -> list[dict[str, Any]]:
    """The store as a fresh process reads it (worker.py dump)."""
    proc = subprocess.run(
        [sys.executable, WORKER, "dump", url], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    out: list[dict[str, Any]] = json.loads(proc.stdout)
    return out


def assert_refused(exc: pytest.ExceptionInfo[BackendError], disk: SmallDisk) -> None:
    assert "ENOSPC" in str(exc.value) and str(disk.store) in str(exc.value), exc.value


@pytest.mark.asyncio
async def test_full_disk_refuses_writes_whole_and_everything_works_after_freeing_space(
    small_disk: SmallDisk,
) -> None:
    async with SessionManager(small_disk.url) as mgr:
        s = await mgr.create("a", user_id="u")
        await s.append_messages([Message.user(f"m{i}") for i in range(3)])
        before = files(small_disk.store)
        small_disk.fill()

        with pytest.raises(BackendError) as exc:
            await s.append_message(Message.user(BIG))
        assert_refused(exc, small_disk)
        with pytest.raises(BackendError) as exc:
            await s.checkpoint(label="full")
        assert_refused(exc, small_disk)
        with pytest.raises(BackendError) as exc:
            await mgr.create("a", user_id="u")
        assert_refused(exc, small_disk)

        assert files(small_disk.store) == before  # nothing half-made, no empty log
        assert [i.id for i in (await mgr.list()).items] == [s.id]
        assert [m.text for m in await s.get_messages()] == ["m0", "m1", "m2"]
        assert await s.list_checkpoints() == []
        assert dump(small_disk.url) == [
            {"id": s.id, "messages": ["m0", "m1", "m2"], "checkpoints": []}
        ]

        small_disk.free()
        assert (await s.append_message(Message.user(BIG))).seq == 4
        await s.checkpoint(label="freed")
        s2 = await mgr.create("a", user_id="u")
        await s2.append_message(Message.user("new"))
    assert dump(small_disk.url) == [
        {"id": s2.id, "messages": ["new"], "checkpoints": []},
        {"id": s.id, "messages": ["m0", "m1", "m2", BIG], "checkpoints": ["freed"]},
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("durability", ["flush", "fsync"])
@pytest.mark.parametrize("write", ["append", "checkpoint", "create"])
async def test_each_write_is_refused_alone_with_nothing_left_behind(
    small_disk: SmallDisk, write: str, durability: str
) -> None:
    async with SessionManager(f"{small_disk.url}?durability={durability}") as mgr:
        s = await mgr.create("a", user_id="u")
        await s.append_message(Message.user("m0"))
        before = files(small_disk.store)
        small_disk.fill()
        writes = {
            "append": lambda: s.append_message(Message.user(BIG)),
            "checkpoint": lambda: s.checkpoint(label="full"),
            "create": lambda: mgr.create("a", user_id="u"),
        }
        with pytest.raises(BackendError) as exc:
            await writes[write]()
        assert_refused(exc, small_disk)
        assert files(small_disk.store) == before
        logs = list(small_disk.store.glob("s/*/*.log"))
        assert len(logs) == 1 and [i.id for i in (await mgr.list()).items] == [s.id]
        small_disk.free()
        await writes[write]()  # the same write, once there is room


@pytest.mark.asyncio
async def test_a_fresh_process_reads_on_a_full_disk_although_sidecars_need_rebuilding(
    small_disk: SmallDisk,
) -> None:
    async with SessionManager(small_disk.url) as mgr:
        s = await mgr.create("a", user_id="u")
        await s.append_messages([Message.user(f"m{i}") for i in range(3)])
        await s.checkpoint(label="c")
        await s.append_message(Message.user("m3"))
    want = [{"id": s.id, "messages": ["m0", "m1", "m2", "m3"], "checkpoints": ["c"]}]
    # The derived files are gone (restored from a backup without them, say): opening the
    # session rebuilds them, which needs space the disk does not have.
    sidecars = sorted(small_disk.store.glob("s/*/*.idx")) + sorted(
        small_disk.store.glob("s/*/*.meta")
    )
    idx_bytes = sidecars[0].read_bytes()
    for p in sidecars:
        p.unlink()
    small_disk.fill()
    assert dump(small_disk.url) == want
    small_disk.free()
    assert dump(small_disk.url) == want
    assert sidecars[0].read_bytes() == idx_bytes  # rebuilt on disk once there was room


@pytest.mark.asyncio
async def test_a_write_that_fails_after_its_log_line_is_taken_back(
    small_disk: SmallDisk,
) -> None:
    # The log line fits in its file's last page, the first .meta entry does not: the
    # checkpoint's record reached the log before the disk refused the rest.
    async with SessionManager(small_disk.url) as mgr:
        s = await mgr.create("a", user_id="u")
        await s.append_message(Message.user("m0"))
        log = next(small_disk.store.glob("s/*/*.log"))
        before = log.read_bytes()
        small_disk.fill()
        with pytest.raises(BackendError):
            await s.checkpoint(label="half")
        assert log.read_bytes() == before
        small_disk.free()
        assert await s.list_checkpoints() == []
        await s.checkpoint(label="whole")
    assert dump(small_disk.url)[0]["checkpoints"] == ["whole"]


@pytest.mark.asyncio
async def test_a_listing_row_cut_short_by_the_full_disk_is_taken_back(
    small_disk: SmallDisk,
) -> None:
    # Rows are added until the listing index's last page has less room than a row holds:
    # the next row can only be written short. Left there, it would shift every later row
    # out of place.
    async with SessionManager(small_disk.url) as mgr:
        s = await mgr.create("a", user_id="u")
        await s.append_message(Message.user("m0"))
        index = small_disk.store / "i" / "g.ix"
        sessions = 1
        while PAGE - index.stat().st_size % PAGE >= ENTRY:
            await mgr.create("a", user_id="u")  # one row each
            sessions += 1
        rows = index.stat().st_size
        small_disk.fill()
        await asyncio.sleep(0.01)  # past REFRESH_US: the append writes listing rows again
        with pytest.raises(BackendError) as exc:
            await s.append_message(Message.user("m1"))
        assert_refused(exc, small_disk)
        assert index.stat().st_size == rows
        small_disk.free()
        await s.append_message(Message.user("m1"))
        new = await mgr.create("a", user_id="u")
        page = await mgr.list(limit=2)
        assert [i.id for i in page.items] == [new.id, s.id]
    listed = [row["id"] for row in dump(small_disk.url)]
    assert listed[:2] == [new.id, s.id] and len(listed) == sessions + 1


def check(url: str, flag: str = "--check") -> subprocess.CompletedProcess[str]:
    """``aixgo file repair --check URL`` (or without ``--check``), through the aixgo script."""
    script = shutil.which("aixgo")
    assert script is not None, "the aixgo script is not on PATH"
    return subprocess.run(
        [script, "file", "repair", *filter(None, [flag]), url],
        capture_output=True,
        text=True,
        check=False,
    )


def check_read_only(disk: Path, ro: Path) -> subprocess.CompletedProcess[str]:
    """``repair --check`` of the store on ``disk`` seen through a read-only bind mount."""
    ro.mkdir()
    subprocess.run(["mount", "--bind", str(disk), str(ro)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
        return check(f"file://{ro}/store")
    finally:
        subprocess.run(["umount", str(ro)], check=True)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.asyncio
async def test_repair_check_on_a_full_disk_or_a_read_only_mount_writes_nothing(
    small_disk: SmallDisk, tmp_path: Path
) -> None:
    async with SessionManager(small_disk.url) as mgr:
        sessions = [await mgr.create("a", user_id="u") for _ in range(2)]
        for s in sessions:
            await s.append_messages([Message.user(f"m{i}") for i in range(3)])
    idx = next(small_disk.store.glob(f"s/*/{sessions[0].id}.idx"))
    idx.unlink()  # derived: rebuilt when the session is next opened for real
    before = tree(small_disk.store)
    small_disk.fill()
    proc = check(small_disk.url)
    assert proc.returncode == 1 and not proc.stderr, proc.stderr
    assert f"NEEDS REPAIR {idx}: missing" in proc.stdout
    assert "2 sessions checked; nothing was changed" in proc.stdout
    assert tree(small_disk.store) == before
    # Read-only all the way down: the same store through a read-only bind mount.
    proc = check_read_only(small_disk.path, tmp_path / "ro")
    assert proc.returncode == 1 and not proc.stderr, proc.stderr
    assert "2 sessions checked; nothing was changed" in proc.stdout
    assert tree(small_disk.store) == before
    # repair itself needs room: it stops with a clear error, the listing as it was.
    listing = {p: p.read_bytes() for p in small_disk.store.glob("i/*")}
    proc = check(small_disk.url, "")
    assert proc.returncode == 2 and "free space and run repair again" in proc.stderr, proc.stderr
    assert {p: p.read_bytes() for p in small_disk.store.glob("i/*")} == listing
    small_disk.free()
    assert repair(small_disk.url).sessions == 2
    proc = check(small_disk.url)
    assert proc.returncode == 0 and "2 sessions checked" in proc.stdout, proc.stdout
