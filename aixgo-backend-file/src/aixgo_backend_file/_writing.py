"""Writing: one session's append-only record log and its two derived sidecars.

The log (``<id>.log``) is the only source of truth. Line 1 is the session header; then come
message records (one per message, each naming its batch so a half-written batch is
recognisable), checkpoint records, restore records (an undo checkpoint and a new head branch in
one line, so a restore is all-or-nothing) and, last, a delete record. Nothing in it is ever
rewritten; a torn tail left by a crash is cut off under the lock by the next opener.

Two sidecars make reads cheap and are always rebuildable from the log:

* ``<id>.idx``: 40 bytes per message (offset, length, branch, id hash, time, ``.meta`` size),
  so message ``k`` of the log is found with one ``pread`` and ``get_messages(last=n)`` costs
  O(n) (:mod:`aixgo_backend_file._reading`);
* ``<id>.meta``: a copy of every checkpoint/restore/delete record with its log offset, so
  opening a session reads the branch table and checkpoints without scanning the messages.

Both are made on first need (the first message, the first checkpoint): a new session is its
log alone, and a missing sidecar reads as an empty one, so a create is one file.

Writers hold an exclusive ``flock`` on the log (:func:`aixgo_backend_file._recovery.lock`)
and write, in order: log line(s), listing index entries, sidecar entries. With
``durability=fsync`` the log is then synced after the lock is released, by
:mod:`aixgo_backend_file._commit`, before the write is acknowledged (sidecars and listing
lines may reach the disk before the log lines they point at: loading checks them against the
log and rebuilds them), or inline by a lone writer (``sync=True`` here). A write that fails
part-way is taken back with :func:`undo`, so a full disk leaves no half-made record.

The append path is :func:`append`, and :func:`append_one` for the common single message.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Sequence
from typing import Any
from zlib import crc32

from aixgo.clock import to_micros
from aixgo.errors import BackendError, CheckpointNotFound, ConflictError
from aixgo.message import Message
from aixgo.session.codec import check_repeat, stored_copy
from aixgo.session.kit import stale_seq
from aixgo.session.models import Checkpoint, SessionInfo

from aixgo_backend_file import _record as record
from aixgo_backend_file._diskfull import logger
from aixgo_backend_file._paths import Layout, open_file
from aixgo_backend_file._reading import find
from aixgo_backend_file._recovery import read_record, remove_files, truncate
from aixgo_backend_file._state import (
    ID_WINDOW,
    IDX,
    LogState,
    Touch,
    apply_other,
    checkpoint,
    close_files,
    fsync_dir,
    id_hash,
    idx_file,
    meta_file,
    new_state,
    write_all,
)

# How large the id window grows before find() reloads it (see _reading._load_window).
_WINDOW_MAX = 2 * ID_WINDOW

#: Where a view's files end (log size, message count, ``.meta`` size), for :func:`undo`.
Mark = tuple[int, int, int]


def create(layout: Layout, info: SessionInfo, *, fsync: bool, touch: Touch) -> LogState:
    """Write a new session's log (its header is its only line)."""
    new_shard = layout.ensure_shard(info.id)
    path = layout.session_base(info.id) + "log"
    while True:
        try:
            fd = open_file(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, "session log")
        except FileExistsError:
            unfinished = _unfinished(layout, info.id, path, fsync)
            if unfinished is None:
                continue  # taken back meanwhile: create it afresh
            log = unfinished
            break
        log = new_state(layout, info.id, fd, fsync=fsync)
        # Held until the create is complete: an opener that finds the file meanwhile
        # waits, then sees it whole or unlinked, never a session that is taken back.
        fcntl.flock(fd, fcntl.LOCK_EX)
        break
    try:
        _write_header(log, info)
        touch(log, log.updated)
        if fsync:
            sync(log)
            shard = os.path.dirname(path)
            fsync_dir(shard)
            if new_shard:
                fsync_dir(os.path.dirname(shard))
    except BaseException:
        _unmake(log)
        raise
    fcntl.flock(log.fd, fcntl.LOCK_UN)
    return log


def _unfinished(layout: Layout, session_id: str, path: str, fsync: bool) -> LogState | None:
    """The existing log at ``path``, locked and emptied, if its creation never completed
    (a process killed before the header was whole: never acknowledged, so never found),
    so a create of the same id (a deterministic one, such as a data key record's) can
    finish; ``None`` if it is gone; :class:`ConflictError` if it is a session."""
    try:
        fd = open_file(path, os.O_RDWR | os.O_APPEND, "session log")
    except FileNotFoundError:
        return None
    log = new_state(layout, session_id, fd, fsync=fsync)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a creator still at work holds it until done
        if os.fstat(fd).st_nlink == 0:
            close_files(log)
            return None
        if read_record(log, 0) is not None:
            raise ConflictError(f"session {session_id!r} exists already")
        os.ftruncate(fd, 0)
    except BaseException:
        close_files(log)
        raise
    return log


def _write_header(log: LogState, info: SessionInfo) -> None:
    header = {
        "t": "session",
        "v": 1,
        "id": info.id,
        "agent": info.agent,
        "user_id": info.user_id,
        "created_at": to_micros(info.created_at),
        "metadata": info.metadata,
    }
    data = record.line(record.other_payload(header))
    write_all(log.fd, data)
    apply_other(log, header, 0)
    log.size = len(data)
    log.lines = 1  # the header: catching up with another writer checks against it


def _unmake(log: LogState) -> None:
    """Take back a create that failed part-way (its lock held): no file of it remains,
    so it is neither listed nor found."""
    with contextlib.suppress(OSError):
        os.unlink(log.path)
        if log.fsync:
            fsync_dir(os.path.dirname(log.path))
    close_files(log)


# ---------------------------------------------------------------- appends


def append(
    log: LogState,
    messages: Sequence[Message],
    encoded: list[bytes],
    expected_seq: int | None,
    now: int,
    touch: Touch,
    *,
    sync: bool = False,
) -> list[Message]:
    """Append under the exclusive lock (held by the caller); with ``sync``, fdatasync
    the log lines before writing the sidecar and index entries."""
    if len(messages) == 1:
        return append_one(log, messages[0], encoded[0], expected_seq, now, touch, sync=sync)
    hashes = [id_hash(m.id) for m in messages]
    known = _known(log, messages, hashes) if log.count else {}
    length = log.lin.length
    if len(known) < len(messages) and expected_seq is not None and expected_seq != length:
        raise stale_seq(log.id, expected_seq, length)
    if known:
        fresh = [i for i, m in enumerate(messages) if m.id not in known]
        if not fresh:
            return [known[m.id] for m in messages]
    else:
        fresh = list(range(len(messages)))
    ts = log.updated if log.updated > now else now
    first = length + 1
    lines, entries = _batch_lines(log, fresh, encoded, hashes, first, ts)
    _write_log(log, lines)
    if sync:
        _sync_to(log, log.size + len(lines))
    window = log.window
    if window is not None:
        for k, i in enumerate(fresh):
            window.setdefault(hashes[i], []).append(log.count + k)
    log.count += len(fresh)
    log.lin.append(len(fresh))
    log.updated = ts
    log.size += len(lines)
    log.lines += len(fresh)
    log.summary = None
    touch(log, ts)
    idx_fd = log.idx_fd if log.idx_fd is not None else idx_file(log)
    write_all(idx_fd, entries)
    return _stored(messages, known, first)


def _known(log: LogState, messages: Sequence[Message], hashes: list[int]) -> dict[str, Message]:
    """The stored copies of the batch's messages already in the history, by id."""
    known: dict[str, Message] = {}
    for m, h in zip(messages, hashes, strict=True):
        found = find(log, m, h)
        if found is not None:
            known[m.id] = check_repeat(log.id, found, m)
    return known


def _batch_lines(
    log: LogState, fresh: list[int], encoded: list[bytes], hashes: list[int], first: int, ts: int
) -> tuple[bytes, bytes]:
    """The log lines and ``.idx`` entries of a batch's fresh messages, numbered from
    ``first`` on the head branch."""
    branch, last = log.lin.head, first + len(fresh) - 1
    lines: list[bytes] = []
    entries: list[bytes] = []
    offset = log.size
    meta_size = log.meta_size
    pack = IDX.pack
    fmt = record.MESSAGE  # record.line inlined: a hot path
    for seq, i in enumerate(fresh, first):
        payload = fmt % (branch, first, seq, last, ts, hashes[i], encoded[i])
        ln = b"%08x %08x %b\n" % (len(payload), crc32(payload), payload)
        lines.append(ln)
        entries.append(pack(offset, len(ln), branch, hashes[i], ts, meta_size))
        offset += len(ln)
    return b"".join(lines), b"".join(entries)


def append_one(
    log: LogState,
    message: Message,
    data: bytes,
    expected_seq: int | None,
    now: int,
    touch: Touch,
    *,
    sync: bool = False,
) -> list[Message]:
    """:func:`append` of one message, without the batch bookkeeping (the common call)."""
    idhash = id_hash(message.id)
    window = log.window
    # A loaded window without the id's hash proves the id new; anything else asks find().
    if log.count and (window is None or idhash in window or len(window) > _WINDOW_MAX):
        found = find(log, message, idhash)
        if found is not None:
            return [check_repeat(log.id, found, message)]
        window = log.window
    lin = log.lin
    branch = lin.head
    head = lin.branches[branch]  # lin.append(1), inlined: a hot path
    seq = head.length + 1
    if expected_seq is not None and expected_seq != seq - 1:
        raise stale_seq(log.id, expected_seq, seq - 1)
    ts = log.updated if log.updated > now else now
    payload = record.MESSAGE % (branch, seq, seq, seq, ts, idhash, data)
    ln = b"%08x %08x %b\n" % (len(payload), crc32(payload), payload)
    offset = log.size
    _write_log(log, ln)
    if sync:
        _sync_to(log, offset + len(ln))
    if window is not None:
        ords = window.get(idhash)
        if ords is None:
            window[idhash] = [log.count]
        else:
            ords.append(log.count)
    log.count += 1
    head.length = seq
    log.updated = ts
    log.size = offset + len(ln)
    log.lines += 1
    log.summary = None
    touch(log, ts)
    entry = IDX.pack(offset, len(ln), branch, idhash, ts, log.meta_size)
    if os.write(log.idx_fd if log.idx_fd is not None else idx_file(log), entry) != IDX.size:
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (a short write)")
    return [stored_copy(message, seq)]


def _stored(messages: Sequence[Message], known: dict[str, Message], first: int) -> list[Message]:
    """What a batch append returns: the stored copy of each repeat, and each fresh message
    numbered from ``first`` on."""
    if not known:
        return [stored_copy(m, first + k) for k, m in enumerate(messages)]
    out: list[Message] = []
    seq = first
    for m in messages:
        if m.id in known:
            out.append(known[m.id])
        else:
            out.append(stored_copy(m, seq))
            seq += 1
    return out


# ---------------------------------------------------------------- other writes


def add_checkpoint(log: LogState, checkpoint_id: str, label: str | None, now: int) -> Checkpoint:
    if checkpoint_id in log.checkpoints:
        raise ConflictError(f"checkpoint {checkpoint_id!r} exists already")
    branch, seq = log.lin.head_ref()
    rec = {
        "t": "cp",
        "id": checkpoint_id,
        "b": branch,
        "s": seq,
        "ts": now,
        "label": label,
        "o": log.count,
    }
    _write_other(log, rec)
    return checkpoint(log, checkpoint_id)


def restore(log: LogState, checkpoint_id: str, undo_id: str, now: int, touch: Touch) -> Checkpoint:
    target = log.checkpoints.get(checkpoint_id)
    if target is None:
        raise CheckpointNotFound(checkpoint_id, log.id)
    if undo_id in log.checkpoints:
        raise ConflictError(f"checkpoint {undo_id!r} exists already")
    ub, us = log.lin.head_ref()
    ts = max(now, log.updated)
    rec = {
        "t": "restore",
        "to": checkpoint_id,
        "undo": undo_id,
        "ub": ub,
        "us": us,
        "nb": len(log.lin.branches),
        "p": log.lin.owner(target.branch, target.seq),
        "fork": target.seq,
        "o": log.count,
        "ts": ts,
    }
    _write_other(log, rec)
    touch(log, ts)
    return checkpoint(log, undo_id)


def delete(log: LogState, now: int) -> None:
    """Write the delete record (the commit point), then remove the files."""
    _write_other(log, {"t": "deleted", "ts": now, "o": log.count}, meta=False)
    remove_files(log)


def mark(log: LogState) -> Mark:
    """Where the view's files end now, for :func:`undo`."""
    return log.size, log.count, log.meta_size


def undo(log: LogState, where: Mark) -> None:
    """Take back a write that failed part-way (exclusive lock held): cut the log and the
    sidecars back to ``where``. Shrinking needs no free space. The view is stale after
    it: the store reopens the session."""
    size, count, meta_size = where
    log.stale = True
    try:
        truncate(log, size)
    except OSError as exc:  # the line stays, whole: a retry with its ids finds it
        logger.warning("%s: cannot take back a failed write (%s)", log.path, exc)
    for fd, keep in ((log.idx_fd, count * IDX.size), (log.meta_fd, meta_size)):
        if fd is not None:
            with contextlib.suppress(OSError):  # the next open checks them anyway
                if os.fstat(fd).st_size > keep:
                    os.ftruncate(fd, keep)


def _write_other(log: LogState, rec: dict[str, Any], *, meta: bool = True) -> None:
    data = record.line(record.other_payload(rec))
    offset = log.size
    _write_log(log, data)
    apply_other(log, rec, offset)
    log.size += len(data)
    log.lines += 1
    if meta:
        meta_line = b"%016x " % offset + data
        write_all(meta_file(log), meta_line)
        log.meta_size += len(meta_line)


def _write_log(log: LogState, data: bytes) -> None:
    try:
        write_all(log.fd, data)
    except OSError:
        # ENOSPC and friends: take back a partial line so the log stays well-formed.
        with contextlib.suppress(OSError):
            os.ftruncate(log.fd, log.size)
        raise


# ---------------------------------------------------------------- durability


def sync(log: LogState) -> None:
    """Make the log durable up to what this process has read or written of it (the
    sidecars are rebuildable, so they are not synced)."""
    _sync_to(log, log.size)


def _sync_to(log: LogState, end: int) -> None:
    """``fdatasync`` the log, whose first ``end`` bytes are validated or written."""
    try:
        os.fdatasync(log.fd)
    except OSError as exc:
        # e.g. EIO. Linux reports a failed writeback once: a later sync of the same
        # pages may succeed without them being on disk, so this view is not trusted
        # again (the store drops it; the next operation reopens the session).
        log.sync_error = exc
        raise BackendError(
            f"fdatasync of {log.path} failed ({exc}): the write may not be on disk"
        ) from exc
    log.synced = end
