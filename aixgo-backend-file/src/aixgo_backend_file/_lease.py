"""Turn leases of a file store (:class:`aixgo.session.TurnLeases`), one per session.

Two small files beside the session's log, both 0600 in its 0700 shard directory and named
after the validated session id only:

* ``<id>.lease``, the record: the fencing token, the holder and its expiry. Every change of
  the lease happens under an exclusive ``flock`` of this file, held for a few system calls.
  The record is the truth about who holds the lease; the token only ever grows (a record
  that fails its checksum restarts the count above any earlier one).
* ``<id>.turn``, the holder's lock: the process holding the lease keeps an exclusive
  ``flock`` on it, on a descriptor of the acquisition's own (so two owners in one process
  exclude each other as two processes do). The kernel drops it when the process dies, so a
  holder that is gone frees the lease at once, before its expiry. A holder that is alive but
  stuck past its expiry loses it to the next owner, who replaces the file (a new inode) and
  locks that one: the stuck holder's lock then guards nothing, and its renewals fail.

Expiries are ``time.monotonic`` readings, which every process of one machine shares (immune
to wall-clock steps); a store shared between machines needs a backend made for that. Nothing
here is synced to disk: after a power loss no process holds a lease.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import threading
import time
from collections.abc import Iterator
from zlib import crc32

from aixgo.errors import InvalidArgument, SessionNotFound

from aixgo_backend_file._paths import open_file
from aixgo_backend_file._store import Store

#: The longest owner name, in UTF-8 bytes.
MAX_OWNER_BYTES = 256
# token, expiry (monotonic ns; 0 = released), owner length, owner, checksum of the rest.
_HEAD = struct.Struct("<QqH")
_RECORD = _HEAD.size + MAX_OWNER_BYTES
_CRC = struct.Struct("<I")


class Leases:
    """The turn leases of one store, as held by this backend instance."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # (session id, owner) -> the descriptor holding that owner's lock on <id>.turn.
        self._held: dict[tuple[str, str], int] = {}
        self._mutex = threading.Lock()

    def close(self) -> None:
        """Give up every holder lock of this instance (their leases free at once)."""
        with self._mutex:
            while self._held:
                os.close(self._held.popitem()[1])

    def acquire(self, session_id: str, owner: str, ttl: float) -> int | None:
        data = _owner_bytes(owner)
        with self._guard(session_id) as (fd, base):
            token, expires, holder = _read(fd)
            now = time.monotonic_ns()
            if holder == data and expires > now:  # held by this owner: a renewal
                _write(fd, token, now + _ns(ttl), data)
                return token
            if holder and expires > now and _alive(base + "turn"):
                return None
            lock = self._held.pop((session_id, owner), None)
            if lock is not None:
                os.close(lock)
            lock = _take(base + "turn")
            token += 1
            try:
                _write(fd, token, now + _ns(ttl), data)
            except BaseException:
                os.close(lock)
                raise
            self._held[session_id, owner] = lock
            return token

    def renew(self, session_id: str, owner: str, ttl: float) -> bool:
        data = _owner_bytes(owner)
        with self._guard(session_id) as (fd, _):
            token, expires, holder = _read(fd)
            now = time.monotonic_ns()
            if holder != data or expires <= now:
                return False
            _write(fd, token, now + _ns(ttl), data)
            return True

    def release(self, session_id: str, owner: str) -> None:
        data = _owner_bytes(owner)
        try:
            with self._guard(session_id) as (fd, _):
                token, _expires, holder = _read(fd)
                if holder == data:
                    _write(fd, token, 0, b"")
                # Closed under the guard: no acquirer sees the record free but the lock held.
                lock = self._held.pop((session_id, owner), None)
                if lock is not None:
                    os.close(lock)
        except SessionNotFound:
            with self._mutex:
                lock = self._held.pop((session_id, owner), None)
            if lock is not None:
                os.close(lock)
            raise

    def drop(self, session_id: str) -> None:
        """After the session was deleted: remove its lease files and this instance's locks."""
        with self._mutex:
            for key in [k for k in self._held if k[0] == session_id]:
                os.close(self._held.pop(key))
        base = self.store.layout.session_base(session_id)
        for ext in ("turn", "lease"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(base + ext)

    @contextlib.contextmanager
    def _guard(self, session_id: str) -> Iterator[tuple[int, str]]:
        """The session's lease record, exclusively locked; SessionNotFound if the session
        does not exist (checked under the lock, so a concurrent delete is seen)."""
        self.store.open()  # BackendClosed after close(), before any file is touched
        base = self.store.layout.session_base(session_id)
        path = base + "lease"
        with self._mutex:
            while True:
                try:
                    fd = open_file(path, os.O_RDWR | os.O_CREAT, "turn lease")
                except FileNotFoundError:  # no shard directory: no such session
                    raise SessionNotFound(session_id) from None
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    if os.fstat(fd).st_nlink:
                        break
                except BaseException:
                    os.close(fd)
                    raise
                os.close(fd)  # unlinked by a delete meanwhile: look again
            try:
                try:
                    self.store.info(session_id)
                except SessionNotFound:
                    for ext in ("turn", "lease"):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(base + ext)
                    raise
                yield fd, base
            finally:
                os.close(fd)  # drops the flock


def _owner_bytes(owner: str) -> bytes:
    data = owner.encode()
    if not data or len(data) > MAX_OWNER_BYTES:
        raise InvalidArgument(
            f"a turn lease owner must be 1 to {MAX_OWNER_BYTES} bytes of UTF-8, not {len(data)}"
        )
    return data


def _ns(ttl: float) -> int:
    return max(1, int(ttl * 1e9))


def _read(fd: int) -> tuple[int, int, bytes]:
    """Token, expiry and holder; an empty file is token 0 with no holder."""
    raw = os.pread(fd, _RECORD + _CRC.size, 0)
    if not raw:
        return 0, 0, b""
    body, tail = raw[:_RECORD], raw[_RECORD:]
    if len(raw) == _RECORD + _CRC.size and _CRC.unpack(tail)[0] == crc32(body):
        token, expires, size = _HEAD.unpack_from(body)
        if size <= MAX_OWNER_BYTES:
            return token, expires, body[_HEAD.size : _HEAD.size + size]
    # Damaged (say, a disk that lost the write): nobody holds it, and counting on from the
    # wall clock in microseconds keeps every later token above every earlier one.
    return time.time_ns() // 1000, 0, b""


def _write(fd: int, token: int, expires: int, holder: bytes) -> None:
    body = _HEAD.pack(token, expires, len(holder)) + holder.ljust(MAX_OWNER_BYTES, b"\0")
    os.pwrite(fd, body + _CRC.pack(crc32(body)), 0)


def _alive(path: str) -> bool:
    """Whether a live process holds the lock on ``path`` (the holder's lock file)."""
    try:
        fd = open_file(path, os.O_RDONLY, "turn lock")
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)
    return False


def _take(path: str) -> int:
    """A descriptor holding the lock on ``path``; if a stuck holder (whose lease expired)
    still has it, the file is replaced by a new one first (the record's guard is held)."""
    fd = open_file(path, os.O_RDWR | os.O_CREAT, "turn lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        os.close(fd)
    except BaseException:
        os.close(fd)
        raise
    os.unlink(path)
    fd = open_file(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, "turn lock")
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new inode: nobody else has it
    return fd
