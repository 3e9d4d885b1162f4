"""file:// turn leases and per-user sessions beyond the conformance kit: the files they use,
holders in other processes that die or get stuck, and a damaged lease record."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from aixgo.session import SessionManager
from aixgo_backend_file import FileBackend

HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from aixgo_backend_file import FileBackend

    async def main(url, session_id, ttl):
        backend = FileBackend(url)
        token = await backend.acquire_turn(session_id, "holder", ttl)
        print(token, flush=True)
        sys.stdin.readline()  # "renew?" from the test: try to renew, say how it went
        print(await backend.renew_turn(session_id, "holder", ttl), flush=True)
        sys.stdin.readline()

    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
    """
)


def holder(url: str, session_id: str, ttl: float) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, session_id, str(ttl)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "AIXGO_DISABLE_PLUGINS": "react"},
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def ask(proc: subprocess.Popen[str], line: str) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


def finish(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


@pytest.mark.asyncio
async def test_lease_and_pair_files_are_private_and_named_by_ids_and_hashes(
    mgr: SessionManager, backend: FileBackend, store_dir: Path
) -> None:
    s = await mgr.get_or_create("agent/../x", "user ../../etc")
    assert await backend.acquire_turn(s.id, "owner ../../x", 30.0) is not None
    shard = store_dir / "s" / s.id[:2]
    made = sorted(p.name for p in shard.iterdir())
    assert made == [f"{s.id}.{ext}" for ext in ("lease", "log", "turn")]
    locks = list((store_dir / "i").glob("*.lock"))
    assert len(locks) == 1 and locks[0].name.startswith("p-")
    for path in [shard / f"{s.id}.lease", shard / f"{s.id}.turn", *locks]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    await mgr.delete(s.id)
    assert sorted(p.name for p in shard.iterdir()) == []  # the lease files went with it


@pytest.mark.asyncio
async def test_two_owners_in_one_process_exclude_each_other(
    mgr: SessionManager, backend: FileBackend, store_url: str
) -> None:
    s = await mgr.create("agent", user_id="u")
    other = FileBackend(store_url)
    try:
        assert await backend.acquire_turn(s.id, "one", 30.0) is not None
        assert await other.acquire_turn(s.id, "two", 30.0) is None
        assert await backend.acquire_turn(s.id, "two", 30.0) is None  # same instance too
        await backend.close()  # its holder locks go: the lease is free at once
        assert await other.acquire_turn(s.id, "two", 30.0) is not None
    finally:
        await other.close()


@pytest.mark.asyncio
async def test_a_killed_holder_frees_the_lease_at_once(
    mgr: SessionManager, backend: FileBackend, store_url: str
) -> None:
    s = await mgr.create("agent", user_id="u")
    proc, token = holder(store_url, s.id, 600.0)
    try:
        assert await backend.acquire_turn(s.id, "next", 30.0) is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        t0 = time.monotonic()
        taken = await backend.acquire_turn(s.id, "next", 30.0)
        assert taken is not None and taken > token
        assert time.monotonic() - t0 < 1  # no waiting for the 600 s ttl
    finally:
        finish(proc)


@pytest.mark.asyncio
async def test_a_stuck_holder_loses_the_lease_after_its_ttl(
    mgr: SessionManager, backend: FileBackend, store_url: str
) -> None:
    s = await mgr.create("agent", user_id="u")
    proc, token = holder(store_url, s.id, 1.0)
    try:
        assert await backend.acquire_turn(s.id, "next", 30.0) is None
        await asyncio.sleep(1.3)  # the holder lives on, but does not renew in time
        taken = await backend.acquire_turn(s.id, "next", 30.0)
        assert taken is not None and taken > token
        assert ask(proc, "renew?") == "False"  # the stuck holder learns it lost the lease
        assert await backend.renew_turn(s.id, "next", 30.0) is True
    finally:
        finish(proc)


@pytest.mark.asyncio
async def test_a_damaged_lease_record_frees_the_lease_and_tokens_keep_growing(
    mgr: SessionManager, backend: FileBackend, store_dir: Path
) -> None:
    s = await mgr.create("agent", user_id="u")
    first = await backend.acquire_turn(s.id, "one", 30.0)
    record = store_dir / "s" / s.id[:2] / f"{s.id}.lease"
    record.write_bytes(b"\x07" * 40)
    await backend.release_turn(s.id, "one")
    second = await backend.acquire_turn(s.id, "two", 30.0)
    assert first is not None and second is not None and second > first
    assert await backend.acquire_turn(s.id, "three", 30.0) is None
