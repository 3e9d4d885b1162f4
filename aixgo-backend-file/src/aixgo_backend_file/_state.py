"""LogState: what a process knows about one session log, and applying records to it.

The state is plain data; the functions that change it live by what they do:
:mod:`aixgo_backend_file._recovery` (opening, loading, catching up, repairing),
:mod:`aixgo_backend_file._reading` (the tail read) and :mod:`aixgo_backend_file._writing`
(appends and the other writes). The on-disk format is described in
:mod:`aixgo_backend_file._writing`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from aixgo.clock import from_micros
from aixgo.errors import CheckpointNotFound, CorruptedData
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
    h = _BLAKE2B_8.copy()  # cheaper than a new hash object with its keyword arguments
    h.update(message_id.encode())
    return int.from_bytes(h.digest(), "little")


_BLAKE2B_8 = hashlib.blake2b(digest_size=8)


@dataclass(slots=True)
class Cp:
    branch: int
    seq: int
    ts: int
    label: str | None


# Identity hash: the group commit keeps a set of states with unsynced writes.
@dataclass(slots=True, eq=False)
class LogState:
    """The in-process view of one session's files: its descriptors, what this process knows
    of their durability, and the history derived from the log. Use it with the store's
    thread lock held; the functions that read or write the files take the file lock."""

    id: str
    path: str
    idx_path: str
    meta_path: str
    fd: int
    fsync: bool
    idx_fd: int | None = None
    meta_fd: int | None = None
    # durability=fsync: how far this process knows the log to be on disk (its own
    # fdatasync finished after the log was this long), and a failed sync's error.
    synced: int = 0
    sync_error: OSError | None = None
    # When this process last wrote the session's listing rows (µs; see Store._touch).
    noted: int = -(1 << 62)
    # The sidecars are in memory (the disk ones could not be written, or must not be):
    # the store reopens the session after its next successful write to catch up on disk.
    detached: bool = False
    # A write failed part-way, or a rescan was cut short: the store must not reuse this
    # view and reopens the session.
    stale: bool = False
    uncut: bool = False  # loading could not cut a torn sidecar end
    problems: list[str] = field(default_factory=list)  # what a scan found wrong on disk
    # ---- the history derived from the log: set by reset()
    size: int = field(init=False)  # log bytes validated and applied
    lines: int = field(init=False)
    agent: str = field(init=False)
    user_id: str | None = field(init=False)
    created: int = field(init=False)
    metadata: dict[str, Any] = field(init=False)
    updated: int = field(init=False)
    lin: Lineage = field(init=False)
    first_ord: list[int] = field(init=False)  # per branch: ordinal of its first own message
    count: int = field(init=False)  # messages in the log, all branches
    meta_size: int = field(init=False)
    meta_offsets: list[int] = field(init=False)  # log offsets of meta records (line numbers)
    meta_count: int = field(init=False)  # messages the log had at its latest meta record
    checkpoints: dict[str, Cp] = field(init=False)
    deleted: bool = field(init=False)
    window: dict[int, list[int]] | None = field(init=False)  # id hash -> ordinals
    summary: SessionInfo | None = field(init=False)  # info() of the history, on demand

    def __post_init__(self) -> None:
        reset(self)


def new_state(layout: Layout, session_id: str, fd: int, *, fsync: bool) -> LogState:
    """The state of a session whose log is open as ``fd``, with nothing read yet."""
    base = layout.session_base(session_id)
    return LogState(session_id, base + "log", base + "idx", base + "meta", fd, fsync)


def reset(log: LogState) -> None:
    """Forget the history (to re-derive it from the log); descriptors stay."""
    log.size = 0
    log.lines = 0
    log.agent = ""
    log.user_id = None
    log.created = 0
    log.metadata = {}
    log.updated = 0
    log.lin = Lineage()
    log.first_ord = [0]
    log.count = 0
    log.meta_size = 0
    log.meta_offsets = []
    log.meta_count = 0
    log.checkpoints = {}
    log.deleted = False
    log.window = None
    log.summary = None


def close_files(log: LogState) -> None:
    for fd in (log.fd, log.idx_fd, log.meta_fd):
        if fd is not None and fd >= 0:
            os.close(fd)
    log.fd = -1
    log.idx_fd = log.meta_fd = None


# ---------------------------------------------------------------- sidecar descriptors


def open_sidecar(path: str, *, create: bool) -> int | None:
    """A sidecar opened for appending (made if ``create``); None if it does not exist."""
    flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0)
    try:
        return open_file(path, flags, "session sidecar")
    except FileNotFoundError:
        return None


def idx_file(log: LogState) -> int:
    """The ``.idx`` descriptor, made on first need."""
    if log.idx_fd is None:
        log.idx_fd = open_sidecar(log.idx_path, create=True)
    assert log.idx_fd is not None
    return log.idx_fd


def meta_file(log: LogState) -> int:
    """The ``.meta`` descriptor, made on first need."""
    if log.meta_fd is None:
        log.meta_fd = open_sidecar(log.meta_path, create=True)
    assert log.meta_fd is not None
    return log.meta_fd


def detach(log: LogState, idx_keep: int, meta_keep: int) -> None:
    """Keep the sidecars in memory from now on, starting from the first ``idx_keep`` and
    ``meta_keep`` bytes of the ones on disk (which stay as they are)."""
    idx = memory_copy(_readable(log, log.idx_path) if idx_keep else None, idx_keep)
    try:
        meta = memory_copy(_readable(log, log.meta_path) if meta_keep else None, meta_keep)
    except BaseException:
        os.close(idx)
        raise
    for fd in (log.idx_fd, log.meta_fd):
        if fd is not None:
            os.close(fd)
    log.idx_fd, log.meta_fd = idx, meta
    log.detached = True


def _readable(log: LogState, path: str) -> int | None:
    fd = log.idx_fd if path == log.idx_path else log.meta_fd
    if fd is not None:
        return fd
    try:  # made by another process since this one looked, or never
        fd = open_file(path, os.O_RDONLY, "session sidecar")
    except FileNotFoundError:
        return None
    if path == log.idx_path:
        log.idx_fd = fd
    else:
        log.meta_fd = fd
    return fd


# ---------------------------------------------------------------- applying records


def apply_message(log: LogState, idhash: int, ts: int) -> None:
    if log.window is not None:
        log.window.setdefault(idhash, []).append(log.count)
    log.count += 1
    log.lin.append(1)
    log.updated = max(log.updated, ts)
    log.summary = None


def apply_other(log: LogState, rec: dict[str, Any], offset: int) -> None:
    """Apply a record other than a message (header, checkpoint, restore, delete)."""
    kind = rec.get("t")
    if kind == "session":
        log.agent = rec["agent"]
        log.user_id = rec["user_id"]
        log.created = log.updated = rec["created_at"]
        log.metadata = rec["metadata"]
    elif kind == "cp":
        log.checkpoints[rec["id"]] = Cp(rec["b"], rec["s"], rec["ts"], rec["label"])
    elif kind == "restore":
        _apply_restore(log, rec, offset)
    elif kind == "deleted":
        log.deleted = True
    else:
        raise CorruptedData(f"{log.path}: unknown record type {kind!r} at byte {offset}")
    if kind != "session":
        log.meta_offsets.append(offset)
        log.meta_count = max(log.meta_count, rec.get("o", 0))
    log.summary = None


def _apply_restore(log: LogState, rec: dict[str, Any], offset: int) -> None:
    if rec["nb"] != len(log.lin.branches):
        raise CorruptedData(f"{log.path}: restore record at byte {offset} is out of order")
    log.checkpoints[rec["undo"]] = Cp(rec["ub"], rec["us"], rec["ts"], "before-restore")
    log.lin.branches.append(Branch(rec["p"], rec["fork"], rec["fork"]))
    log.lin.head = len(log.lin.branches) - 1
    log.first_ord.append(rec["o"])
    log.updated = max(log.updated, rec["ts"])


def corrupt(log: LogState, pos: int, why: str) -> NoReturn:
    raise CorruptedData(
        f"{log.path}, line {log.lines + 1} (byte {pos}): {why}. Records before it are "
        "intact; inspect the file, or move it aside and run "
        "`aixgo file repair` to rebuild the indexes"
    )


# ---------------------------------------------------------------- what it holds


def info(log: LogState) -> SessionInfo:
    if log.summary is None:
        log.summary = SessionInfo(
            id=log.id,
            agent=log.agent,
            user_id=log.user_id,
            created_at=from_micros(log.created),
            updated_at=from_micros(log.updated),
            message_count=log.lin.length,
            metadata=log.metadata,
        )
    return log.summary


def _cp_model(log: LogState, checkpoint_id: str, cp: Cp) -> Checkpoint:
    return Checkpoint(
        id=checkpoint_id,
        session_id=log.id,
        seq=cp.seq,
        created_at=from_micros(cp.ts),
        label=cp.label,
    )


def checkpoint(log: LogState, checkpoint_id: str) -> Checkpoint:
    cp = log.checkpoints.get(checkpoint_id)
    if cp is None:
        raise CheckpointNotFound(checkpoint_id, log.id)
    return _cp_model(log, checkpoint_id, cp)


def list_checkpoints(log: LogState) -> list[Checkpoint]:
    return [_cp_model(log, k, cp) for k, cp in log.checkpoints.items()]


# ---------------------------------------------------------------- file helpers


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
