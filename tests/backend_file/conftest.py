"""Fixtures for the file backend's tests: a private store directory per test."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from aixgo.session import SessionManager
from aixgo_backend_file import FileBackend


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """A store path that does not exist yet (the backend creates it 0700)."""
    return tmp_path / "store"


@pytest.fixture
def store_url(store_dir: Path) -> str:
    return f"file://{store_dir}"


@pytest_asyncio.fixture
async def mgr(store_url: str) -> AsyncIterator[SessionManager]:
    async with SessionManager(store_url) as m:
        yield m


@pytest_asyncio.fixture
async def backend(store_url: str) -> AsyncIterator[FileBackend]:
    b = FileBackend(store_url)
    yield b
    await b.close()


WORKER = str(Path(__file__).with_name("worker.py"))
Spawn = Callable[..., "subprocess.Popen[str]"]


def _spawn(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, WORKER, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"worker failed to start: {line!r} {err}")
    return proc


@pytest.fixture
def spawn_worker() -> Spawn:
    """Start ``worker.py`` (a real process using the store) and wait until it is ready."""
    return _spawn


Release = Callable[[list["subprocess.Popen[str]"]], list[str]]


def _release(procs: list[subprocess.Popen[str]]) -> list[str]:
    for p in procs:  # all first, so the workers run at the same time
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(out)
    return outs


@pytest.fixture
def release_workers() -> Release:
    """Send ready workers "go" together, wait for them to succeed; their standard outputs."""
    return _release


class SmallDisk:
    """A 2 MiB file system of its own (tmpfs) holding a store: :meth:`fill` it until the
    disk is full (ENOSPC), :meth:`free` the space again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = path / "store"
        self.url = f"file://{self.store}"
        self._filler = path / "filler"

    def fill(self) -> None:
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            chunk = b"\0" * 65536
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    if len(chunk) == 1:
                        break
                    chunk = chunk[: len(chunk) // 2]
        finally:
            os.close(fd)

    def free(self) -> None:
        self._filler.unlink()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A real full disk for the tests: needs root to mount (so fails under CI, which runs
    as root; elsewhere the test is skipped)."""
    where = tmp_path / "disk"
    where.mkdir()
    mount, umount = shutil.which("mount"), shutil.which("umount")
    why = "mount/umount not found"
    if mount and umount:
        done = subprocess.run(
            [mount, "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
        why = done.stderr.strip()
    if not (mount and umount) or done.returncode:
        msg = f"cannot mount a small tmpfs to fill up (it needs root): {why}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    try:
        yield SmallDisk(where)
    finally:
        subprocess.run([umount, str(where)], check=True)
