"""Audit sinks: where sealed records go. The built-in one appends to a JSONL file."""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from aixgo.audit._chain import Sealer, link_of
from aixgo.errors import AuditError

__all__ = ["AuditSink", "JsonlSink"]

_CHUNK = 64 * 1024
# fdatasync flushes the lines and the size that makes them readable, skipping timestamps;
# where it does not exist (macOS), fsync.
_datasync = getattr(os, "fdatasync", os.fsync)


@runtime_checkable
class AuditSink(Protocol):
    """A place audit records are appended to, kept as one HMAC chain.

    ``write`` appends ``bodies`` in order as the next records of the chain: it finds the
    last record (index and mac) and seals each body after it with ``sealer``, atomically
    with respect to every other writer of the same log, in any process. It raises on
    failure; :class:`AuditLog` applies the failure policy. ``lines`` yields the stored
    records in order, for verification.

    Optionally, ``synchronous = True`` says ``write`` never suspends (it cannot be
    interrupted half-way by a cancellation), which spares the log the task it otherwise
    shields each write with.
    """

    async def write(self, bodies: Sequence[dict[str, Any]], sealer: Sealer) -> None: ...

    def lines(self) -> AsyncIterator[str]: ...

    async def close(self) -> None: ...


class JsonlSink:
    """An append-only JSON Lines file, 0600 (its folder made 0700 when missing).

    Writers in several processes share it: each append takes an exclusive ``flock`` on
    the file, reads the last record (a cached one when the file did not grow meanwhile),
    and appends the sealed lines in one ``write``, so the chain stays a single valid one.
    With ``fsync=True`` each append is flushed to disk (``fdatasync``) before the operation
    returns.
    A final line a crash left torn (no newline) was never acknowledged: the next writer
    cuts it off before appending.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path).expanduser()
        self.fsync = fsync
        self._fd: int | None = None
        self._tail: tuple[int, int, str] | None = None  # (file size, next index, last mac)
        self._mutex = threading.Lock()  # flock does not exclude threads sharing the fd
        #: Without fsync a write is a few system calls made inline, never suspending.
        self.synchronous = not fsync

    def __repr__(self) -> str:
        return f"JsonlSink({str(self.path)!r}, fsync={self.fsync})"

    def _open(self) -> int:
        if self._fd is None:
            if not self.path.parent.exists():
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.fchmod(fd, 0o600)
            if self.fsync:  # the file's name must survive a crash too, not only its lines
                folder = os.open(self.path.parent, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(folder)
                finally:
                    os.close(folder)
            self._fd = fd
        return self._fd

    async def write(self, bodies: Sequence[dict[str, Any]], sealer: Sealer) -> None:
        """Append ``bodies`` as the next records (see the class docs)."""
        if self.fsync:
            # fsync blocks for milliseconds: off the event loop.
            await asyncio.to_thread(self._write, bodies, sealer)
        else:
            self._write(bodies, sealer)

    def _write(self, bodies: Sequence[dict[str, Any]], sealer: Sealer) -> None:
        with self._mutex:
            fd = self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                # Under the lock the end of the file tells whether another process appended
                # since this one last did (lseek: cheaper than fstat, the same answer).
                size = os.lseek(fd, 0, os.SEEK_END)
                tail = self._tail
                if tail is not None and tail[0] == size:
                    _, index, prev = tail
                else:
                    index, prev, size = self._read_tail(fd, size)
                if len(bodies) == 1:
                    line, prev = sealer.seal(bodies[0], index, prev)
                    data = (line + "\n").encode()
                    index += 1
                else:
                    out = []
                    for body in bodies:
                        line, prev = sealer.seal(body, index, prev)
                        out.append(line + "\n")
                        index += 1
                    data = "".join(out).encode()
                self._tail = None
                written = os.write(fd, data)
                if written < len(data):  # short writes are rare (a full disk): finish it
                    view = memoryview(data)[written:]
                    while view:
                        view = view[os.write(fd, view) :]
                if self.fsync:
                    _datasync(fd)
                self._tail = (size + len(data), index, prev)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _read_tail(self, fd: int, size: int) -> tuple[int, str, int]:
        """``(next index, last mac, size)``, cutting off a torn final line first."""
        end = size
        buf = b""
        while end > 0:
            start = max(0, end - _CHUNK)
            buf = os.pread(fd, end - start, start) + buf
            end = start
            if b"\n" in buf[:-1]:
                break
        if not buf:
            return 0, "", 0
        if not buf.endswith(b"\n"):
            cut = buf.rfind(b"\n") + 1 + end
            os.ftruncate(fd, cut)
            return self._read_tail(fd, cut)
        last = buf[:-1].rsplit(b"\n", 1)[-1]
        link = link_of(last.decode("utf-8", "replace"))
        if link is None:
            raise AuditError(
                f"the last line of audit log {self.path} is not an audit record; run "
                "'aixgo audit verify' on it, and move it aside to start a new log"
            )
        return link[0] + 1, link[1], size

    async def lines(self) -> AsyncIterator[str]:
        """The stored lines in order."""
        with self.path.open("r", encoding="utf-8", errors="replace", newline="\n") as f:
            for line in f:
                yield line

    async def close(self) -> None:
        """Close the file; idempotent."""
        fd, self._fd = self._fd, None
        self._tail = None
        if fd is not None:
            os.close(fd)
