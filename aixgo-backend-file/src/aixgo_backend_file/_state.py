"""LogState: what a process knows about one session log, and applying records to it.

Split from :mod:`aixgo_backend_file._log` (which opens, locks, reads and writes) and
:mod:`aixgo_backend_file._recovery` (which loads and repairs); the on-disk format is
described in :mod:`aixgo_backend_file._log`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from aixgo.clock import from_micros
from aixgo.errors import (
    CheckpointNotFound,
    CorruptedData,
)
from aixgo.session.lineage import Branch, Lineage
from aixgo.session.models import Checkpoint, SessionInfo

from aixgo_backend_file._diskfull import memory_copy
from aixgo_backend_file._paths import Layout, open_file

#: One ``.idx`` entry: offset, line length, branch, message-id hash, time (µs), and the size
#: ``.meta`` had then (so a lost or short ``.meta`` is noticed rather than believed).
IDX = struct.Struct("<QIIQqQ")
#: Idempotent appends look ids up among the last this-many messages written to the log (the
#: whole history for any session shorter than that). Memory: ~100 bytes per id, per session
#: a process appends to.
ID_WINDOW = 65_536
CHUNK = 4 << 20  # the most one read brings in, bar one huge record

#: Called after records are written and before sidecars: ``(log, updated_at_micros)``.
Touch = Callable[["LogState", int], None]


def id_hash(message_id: str) -> int:
    """A stable 64-bit hash of a message id (Python's ``hash`` differs per process)."""
    return int.from_bytes(hashlib.blake2b(message_id.encode(), digest_size=8).digest(), "little")


@dataclass(slots=True)
class Cp:
    branch: int
    seq: int
    ts: int
    label: str | None


class LogState:
    """Fields and record application shared by loading, repairing and writing."""

    def __init__(self, layout: Layout, session_id: str, fd: int, *, fsync: bool) -> None:
        self.id = session_id
        base = layout.session_base(session_id)
        self.path = base + "log"
        self.idx_path = base + "idx"
        self.meta_path = base + "meta"
        self.fd = fd
        self.fsync = fsync
        self.idx_fd: int | None = None
        self.meta_fd: int | None = None
        # durability=fsync: how far this process knows the log to be on disk (its own
        # fdatasync finished after the log was this long), and a failed sync's error.
        self.synced = 0
        self.sync_error: OSError | None = None
        # When this process last wrote the session's listing rows (µs; see Store._touch).
        self.noted = -(1 << 62)
        # The sidecars are in memory (the disk ones could not be written, or must not be):
        # the store reopens the session after its next successful write to catch up on disk.
        self.detached = False
        # A write failed part-way, or a rescan was cut short: the store must not reuse this
        # view and reopens the session.
        self.stale = False
        self._uncut = False  # loading could not cut a torn sidecar end
        self.problems: list[str] = []  # what a scan found wrong on disk (SessionLog.scan)
        self._reset()

    def _reset(self) -> None:
        self.size = 0  # log bytes validated and applied
        self.lines = 0
        self.agent = ""
        self.user_id: str | None = None
        self.created = 0
        self.metadata: dict[str, Any] = {}
        self.updated = 0
        self.lin = Lineage()
        self.first_ord = [0]  # per branch: ordinal (log order) of its first own message
        self.count = 0  # messages in the log, all branches
        self.meta_size = 0
        self.meta_offsets: list[int] = []  # log offsets of meta records, for line numbers
        self.meta_count = 0  # messages the log had when its latest meta record was written
        self.checkpoints: dict[str, Cp] = {}
        self.deleted = False
        self.window: dict[int, list[int]] | None = None
        self._info: SessionInfo | None = None

    def _open_sidecar(self, path: str, *, create: bool) -> int | None:
        flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0)
        try:
            return open_file(path, flags, "session sidecar")
        except FileNotFoundError:
            return None

    def _detach(self, idx_keep: int, meta_keep: int) -> None:
        """Keep the sidecars in memory from now on, starting from the first ``idx_keep`` and
        ``meta_keep`` bytes of the ones on disk (which stay as they are)."""
        idx = memory_copy(
            self._readable(self.idx_path, self.idx_fd) if idx_keep else None, idx_keep
        )
        try:
            meta = memory_copy(
                self._readable(self.meta_path, self.meta_fd) if meta_keep else None, meta_keep
            )
        except BaseException:
            os.close(idx)
            raise
        for fd in (self.idx_fd, self.meta_fd):
            if fd is not None:
                os.close(fd)
        self.idx_fd, self.meta_fd = idx, meta
        self.detached = True

    def _readable(self, path: str, fd: int | None) -> int | None:
        if fd is not None:
            return fd
        try:  # made by another process since this one looked, or never
            fd = open_file(path, os.O_RDONLY, "session sidecar")
        except FileNotFoundError:
            return None
        if path == self.idx_path:
            self.idx_fd = fd
        else:
            self.meta_fd = fd
        return fd

    def _idx(self) -> int:
        if self.idx_fd is None:
            self.idx_fd = self._open_sidecar(self.idx_path, create=True)
        assert self.idx_fd is not None
        return self.idx_fd

    def _meta(self) -> int:
        if self.meta_fd is None:
            self.meta_fd = self._open_sidecar(self.meta_path, create=True)
        assert self.meta_fd is not None
        return self.meta_fd

    def _apply_message(self, idhash: int, ts: int) -> None:
        if self.window is not None:
            self.window.setdefault(idhash, []).append(self.count)
        self.count += 1
        self.lin.append(1)
        self.updated = max(self.updated, ts)
        self._info = None

    def _apply_other(self, rec: dict[str, Any], offset: int) -> None:
        kind = rec.get("t")
        if kind == "session":
            self.agent = rec["agent"]
            self.user_id = rec["user_id"]
            self.created = self.updated = rec["created_at"]
            self.metadata = rec["metadata"]
        elif kind == "cp":
            self.checkpoints[rec["id"]] = Cp(rec["b"], rec["s"], rec["ts"], rec["label"])
        elif kind == "restore":
            if rec["nb"] != len(self.lin.branches):
                raise CorruptedData(f"{self.path}: restore record at byte {offset} is out of order")
            self.checkpoints[rec["undo"]] = Cp(rec["ub"], rec["us"], rec["ts"], "before-restore")
            self.lin.branches.append(Branch(rec["p"], rec["fork"], rec["fork"]))
            self.lin.head = len(self.lin.branches) - 1
            self.first_ord.append(rec["o"])
            self.updated = max(self.updated, rec["ts"])
        elif kind == "deleted":
            self.deleted = True
        else:
            raise CorruptedData(f"{self.path}: unknown record type {kind!r} at byte {offset}")
        if kind != "session":
            self.meta_offsets.append(offset)
            self.meta_count = max(self.meta_count, rec.get("o", 0))
        self._info = None

    def _corrupt(self, pos: int, why: str) -> NoReturn:
        raise CorruptedData(
            f"{self.path}, line {self.lines + 1} (byte {pos}): {why}. Records before it are "
            "intact; inspect the file, or move it aside and run "
            "`aixgo file repair` to rebuild the indexes"
        )

    def info(self) -> SessionInfo:
        if self._info is None:
            self._info = SessionInfo(
                id=self.id,
                agent=self.agent,
                user_id=self.user_id,
                created_at=from_micros(self.created),
                updated_at=from_micros(self.updated),
                message_count=self.lin.length,
                metadata=self.metadata,
            )
        return self._info

    def _cp_model(self, checkpoint_id: str, cp: Cp) -> Checkpoint:
        return Checkpoint(
            id=checkpoint_id,
            session_id=self.id,
            seq=cp.seq,
            created_at=from_micros(cp.ts),
            label=cp.label,
        )

    def checkpoint(self, checkpoint_id: str) -> Checkpoint:
        cp = self.checkpoints.get(checkpoint_id)
        if cp is None:
            raise CheckpointNotFound(checkpoint_id, self.id)
        return self._cp_model(checkpoint_id, cp)

    def list_checkpoints(self) -> list[Checkpoint]:
        return [self._cp_model(k, cp) for k, cp in self.checkpoints.items()]


def write_all(fd: int, data: bytes) -> None:
    """Write ``data`` in one call, or raise :class:`OSError` (the caller takes it back)."""
    written = os.write(fd, data)
    if written != len(data):
        # Regular files only write short when the disk is full; never leave half a line.
        why = f"{os.strerror(errno.ENOSPC)} ({written} of {len(data)} bytes written)"
        raise OSError(errno.ENOSPC, why)


def pread_all(fd: int, size: int, offset: int) -> bytes:
    """``size`` bytes at ``offset``, fewer only at the end of the file."""
    data = os.pread(fd, size, offset)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = os.pread(fd, size - got, offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def fsync_dir(path: str | Path) -> None:
    """Make a new or renamed entry of directory ``path`` durable (fsync mode)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
