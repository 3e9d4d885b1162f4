"""Recovery: opening a session log cold, catching up with other writers, and repairing.

Loading reads the header from the log, the branch table and checkpoints from ``.meta`` and
the message count from ``.idx`` (never the messages); each sidecar vouches for the other
(``.idx`` entries carry the ``.meta`` size, ``.meta`` records the message count) and for the
log (its last entry is checked against the record it points at). Anything that does not add
up is rebuilt from the log. Catching up parses only the log bytes past what was validated:
:func:`lock`, which every operation goes through, costs one ``lseek`` when nothing changed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os

from aixgo.errors import CorruptedData, SessionNotFound

from aixgo_backend_file import _record as record
from aixgo_backend_file._diskfull import logger
from aixgo_backend_file._paths import Layout, open_file
from aixgo_backend_file._state import (
    CHUNK,
    IDX,
    LogState,
    Touch,
    apply_message,
    apply_other,
    close_files,
    corrupt,
    detach,
    fsync_dir,
    idx_file,
    meta_file,
    new_state,
    open_sidecar,
    pread_all,
    reset,
    write_all,
)

#: A batch of message records being read: (offset, line length, fixed fields) each.
Batch = list[tuple[int, int, record.MessageHead]]


class _Rebuild(Exception):
    """A sidecar disagrees with the log: rebuild both from the log."""


def _no_touch(log: LogState, updated: int) -> None:
    """A :data:`Touch` for reads that must write nothing."""


# ---------------------------------------------------------------- opening and locking


def open_log(layout: Layout, session_id: str, *, fsync: bool, touch: Touch) -> LogState:
    """Open an existing session, validating and repairing its tail; SessionNotFound if
    it does not exist (or was deleted)."""
    layout.ensure_shard(session_id, create=False)
    path = layout.session_base(session_id) + "log"
    try:
        fd = open_file(path, os.O_RDWR | os.O_APPEND, "session log")
    except FileNotFoundError:
        raise SessionNotFound(session_id) from None
    log = new_state(layout, session_id, fd, fsync=fsync)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            _load(log, touch)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    except BaseException:
        close_files(log)
        raise
    return log


def lock(log: LogState, touch: Touch, *, exclusive: bool) -> None:
    """Take the file lock and bring ``log`` up to date; release with :func:`unlock`.

    The log only grows, and only under the exclusive lock, so "same size as last time"
    proves nothing changed: the hot path costs one ``lseek``. A log is only ever unlinked
    after it grew (a delete writes its record first), so the link count is looked at
    only when the size moved."""
    fd = log.fd
    fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    try:
        if os.lseek(fd, 0, os.SEEK_END) != log.size:
            if not exclusive:  # repairs need the exclusive lock; flock converts in place
                fcntl.flock(fd, fcntl.LOCK_EX)
            unlinked = os.fstat(fd).st_nlink == 0
            catch_up(log, touch)
            if unlinked:
                log.deleted = True  # unlinked by a delete
        if log.deleted:
            raise SessionNotFound(log.id)
    except BaseException:
        fcntl.flock(fd, fcntl.LOCK_UN)
        raise


def unlock(log: LogState) -> None:
    fcntl.flock(log.fd, fcntl.LOCK_UN)


def scan(layout: Layout, session_id: str) -> LogState:
    """Read a session from its log alone, writing nothing anywhere (``repair --check``):
    its sidecars as they should be are in memory, and ``problems`` says where the files on
    disk differ. SessionNotFound if the log is not a session (any more)."""
    path = layout.session_base(session_id) + "log"
    try:
        fd = open_file(path, os.O_RDONLY, "session log")
    except FileNotFoundError:
        raise SessionNotFound(session_id) from None
    log = new_state(layout, session_id, fd, fsync=False)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        detach(log, 0, 0)
        catch_up(log, _no_touch, cut=False)
        if log.lines == 0:
            raise SessionNotFound(session_id, "its creation did not complete")
        if log.deleted:
            raise SessionNotFound(session_id, "its delete did not complete")
        log.problems = _differences(log)
    except BaseException:
        close_files(log)
        raise
    fcntl.flock(fd, fcntl.LOCK_UN)
    return log


def _differences(log: LogState) -> list[str]:
    """Where the files on disk differ from what a scan derived from the log."""
    out = []
    end = os.fstat(log.fd).st_size
    if end > log.size:
        out.append(
            f"{log.path}: {end - log.size} bytes from byte {log.size} on are a record "
            "torn by a crash; repair cuts them off"
        )
    sidecars = ((log.idx_path, log.idx_fd, IDX.size), (log.meta_path, log.meta_fd, 0))
    for path, fd, unit in sidecars:
        assert fd is not None
        why = _compare(path, fd, unit)
        if why:
            out.append(f"{path}: {why}; the index needs repair")
    return out


def _compare(path: str, want_fd: int, unit: int) -> str:
    """How the file at ``path`` differs from ``want_fd`` (empty if it does not): ``unit``
    is the size of one entry, or 0 for a file of lines."""
    want_size = os.fstat(want_fd).st_size
    try:
        fd = open_file(path, os.O_RDONLY, "session sidecar")
    except FileNotFoundError:
        return f"missing ({want_size} bytes expected)" if want_size else ""
    try:
        have_size = os.fstat(fd).st_size
        pos = 0
        while pos < min(have_size, want_size):
            n = min(CHUNK, min(have_size, want_size) - pos)
            have, want = os.pread(fd, n, pos), os.pread(want_fd, n, pos)
            if have != want:
                at = pos + next(i for i in range(len(have)) if have[i] != want[i])
                where = f"entry {at // unit + 1}" if unit else f"byte {at}"
                return f"{where} does not match the log"
            pos += n
    finally:
        os.close(fd)
    if have_size < want_size:
        return f"ends early ({have_size} of {want_size} bytes)"
    if have_size > want_size:
        return f"runs past the log ({have_size} bytes, {want_size} expected)"
    return ""


# ---------------------------------------------------------------- loading


def _load(log: LogState, touch: Touch) -> None:
    """Cold open under the exclusive lock: header from the log, branch table and
    checkpoints from ``.meta``, message count from ``.idx``; then validate the tail."""
    if os.fstat(log.fd).st_nlink == 0:
        raise SessionNotFound(log.id)
    try:
        _load_sidecars(log)
    except _Rebuild:
        logger.info("%s: its sidecar files disagree with the log; rebuilding them", log.path)
        _rebuild(log)
    catch_up(log, touch)
    if log.deleted:
        remove_files(log)
        raise SessionNotFound(log.id)


def _load_sidecars(log: LogState) -> None:
    header = read_record(log, 0)
    if header is None:
        # A crash between creating the file and writing its header: never acknowledged.
        raise SessionNotFound(log.id, "its creation did not complete")
    rec = json.loads(header[0])
    if rec.get("t") != "session":
        raise _Rebuild  # let the full scan report it with file and line
    apply_other(log, rec, 0)
    log.size = header[1]
    log.lines = 1
    log.uncut = False
    covered = log.size
    log.meta_fd = open_sidecar(log.meta_path, create=False)
    if log.meta_fd is not None:
        covered = max(covered, _load_meta(log, log.meta_fd))
    log.idx_fd = open_sidecar(log.idx_path, create=False)
    if log.idx_fd is not None:
        covered = max(covered, _load_idx(log, log.idx_fd))
    if covered > os.fstat(log.fd).st_size or log.meta_count > log.count:
        raise _Rebuild  # the sidecars disagree with each other or with the log
    log.size = covered
    log.lines = 1 + log.count + len(log.meta_offsets)
    _fix_lengths(log)
    if log.uncut:  # a torn sidecar end stayed: never append after it
        detach(log, log.count * IDX.size, log.meta_size)


def _load_meta(log: LogState, fd: int) -> int:
    buf = pread_all(fd, os.fstat(fd).st_size, 0)
    pos = end = 0
    while pos < len(buf):
        parsed = record.parse_at(buf, pos + 17) if len(buf) - pos > 17 else None
        if parsed is None or parsed.payload is None:
            if parsed is not None and parsed.complete:
                raise _Rebuild
            _cut_sidecar(log, fd, pos)  # a torn sidecar line: the log still has the record
            break
        try:
            offset = int(buf[pos : pos + 16], 16)
            apply_other(log, json.loads(parsed.payload), offset)
        except (ValueError, KeyError, CorruptedData):
            raise _Rebuild from None
        end = offset + parsed.end - pos - 17
        pos = parsed.end
    log.meta_size = pos
    return end


def _load_idx(log: LogState, fd: int) -> int:
    size = os.fstat(fd).st_size
    if size % IDX.size:
        size -= size % IDX.size
        _cut_sidecar(log, fd, size)
    log.count = size // IDX.size
    if not log.count:
        return 0
    entry: tuple[int, ...] = IDX.unpack(os.pread(fd, IDX.size, size - IDX.size))
    offset, length, branch, _, ts, meta_size = entry
    if meta_size > log.meta_size:
        raise _Rebuild
    got = read_record(log, offset)
    head = record.parse_message(got[0]) if got is not None else None
    if head is None or got is None or got[1] != offset + length or head.branch != branch:
        raise _Rebuild
    if head.seq != head.last:
        raise _Rebuild  # ends inside a batch: only a rebuild tells whether it completed
    log.updated = max(log.updated, ts)
    return offset + length


def _cut_sidecar(log: LogState, fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
    except OSError:
        log.uncut = True


def _fix_lengths(log: LogState) -> None:
    branches = log.lin.branches
    for b, br in enumerate(branches):
        nxt = log.first_ord[b + 1] if b + 1 < len(branches) else log.count
        br.length = br.fork_seq + nxt - log.first_ord[b]


def _rebuild(log: LogState) -> None:
    """Forget the sidecars and re-derive everything from the log (O(log size))."""
    refused = False
    for fd in (log.idx_fd, log.meta_fd):
        if fd is not None:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                refused = True
    reset(log)
    if refused:
        detach(log, 0, 0)


def reload_from_log(log: LogState) -> bool:
    """Re-derive ``log`` from the log file alone, into memory, writing nothing: True if
    the file holds the same history as before (so a sidecar was what was wrong). Otherwise,
    or if the log turns out damaged, the view is left stale for the store to drop."""
    size, count = log.size, log.count
    log.stale = True
    detach(log, 0, 0)
    reset(log)
    catch_up(log, _no_touch, cut=False)
    if (log.size, log.count) != (size, count):
        return False
    log.stale = False
    return True


def read_record(log: LogState, offset: int) -> tuple[bytes, int] | None:
    """The valid record at ``offset`` of the log and its end, or None."""
    head = os.pread(log.fd, 4096, offset)
    size = record.record_size(head[: record.PREFIX])
    if size is None:
        return None
    if size > len(head):
        head += pread_all(log.fd, size - len(head), offset + len(head))
    parsed = record.parse_at(head, 0)
    return (parsed.payload, offset + parsed.end) if parsed.payload is not None else None


# ---------------------------------------------------------------- catching up


class _Sidecars:
    """What catching up owes the sidecars: entries to add, and their sizes on disk."""

    __slots__ = ("disk_idx", "disk_meta", "idx", "meta")

    def __init__(self, log: LogState) -> None:
        self.disk_idx = _sidecar_size(log.idx_path, log.idx_fd) // IDX.size
        self.disk_meta = _sidecar_size(log.meta_path, log.meta_fd)
        self.idx: list[bytes] = []
        self.meta: list[bytes] = []


def catch_up(log: LogState, touch: Touch, *, cut: bool = True) -> None:
    """Apply log bytes past ``log.size`` (exclusive lock held): what other processes
    wrote, or the tail a crashed writer left. Cuts a torn tail (unless ``cut`` is False:
    then it is left, unapplied); reports damage in the middle with file and line; writes
    sidecar entries the writer did not (in memory, if the disk refuses them)."""
    end = os.fstat(log.fd).st_size
    if end < log.size:
        raise CorruptedData(f"{log.path} shrank below data already read; run repair")
    owed = _Sidecars(log)
    torn = _apply_tail(log, end, owed)
    if torn and cut:
        logger.info("%s: cutting off a tail torn by a crash (%d bytes from byte %d; never "
                    "acknowledged)", log.path, end - log.size, log.size)  # fmt: skip
        truncate(log, log.size)
    _update_sidecars(log, owed)
    if torn or owed.idx or owed.meta:
        _note(log, touch)  # the crashed writer may not have reached the indexes


def _apply_tail(log: LogState, end: int, owed: _Sidecars) -> bool:
    """Apply the records from ``log.size`` to ``end``; True if the log ends torn (a record
    that does not check out, or half a batch: never acknowledged, left unapplied)."""
    batch: Batch = []
    pos = base = log.size
    buf = b""
    while pos < end:
        rel = pos - base
        parsed = record.parse_at(buf, rel)
        if parsed.payload is None and not parsed.complete and base + len(buf) < end:
            want = max(CHUNK, parsed.end - rel)
            buf, base = pread_all(log.fd, min(want, end - pos), pos), pos
            continue
        if parsed.payload is None:
            _check_torn(log, pos, end)
            return True
        line_end = base + parsed.end
        head = record.parse_message(parsed.payload)
        if head is not None:
            _check_message(log, head, batch, pos)
            batch.append((pos, line_end - pos, head))
            if head.seq == head.last:
                owed.idx += _apply_batch(log, batch, owed.disk_idx)
                log.size = line_end
                batch = []
        else:
            if batch:
                corrupt(log, pos, "a record interrupts a batch of messages")
            meta_line = _apply_record(log, parsed.payload, pos, buf[rel : parsed.end])
            if meta_line is not None and log.meta_size > owed.disk_meta:
                owed.meta.append(meta_line)
            log.size = line_end
        pos = line_end
    return bool(batch)


def _apply_batch(log: LogState, batch: Batch, disk_idx: int) -> list[bytes]:
    """Apply a whole batch of message records; the ``.idx`` entries the disk lacks."""
    out: list[bytes] = []
    for off, length, h in batch:
        apply_message(log, h.idhash, h.ts)
        if log.count > disk_idx:
            out.append(IDX.pack(off, length, h.branch, h.idhash, h.ts, log.meta_size))
    log.lines += len(batch)
    return out


def _apply_record(log: LogState, payload: bytes, pos: int, line: bytes) -> bytes | None:
    """Apply the non-message record ``line`` at ``pos``; its ``.meta`` line (``None``
    for the session header, which has none)."""
    try:
        rec = json.loads(payload)
        rec.get("t")
    except (ValueError, AttributeError):
        corrupt(log, pos, "the record is not JSON")
    if log.lines == 0 and rec.get("t") != "session":
        corrupt(log, pos, "the first record is not a session header")
    if log.lines and rec.get("t") == "session":
        corrupt(log, pos, "a second session header")
    try:
        apply_other(log, rec, pos)
    except (KeyError, TypeError, ValueError, AttributeError):
        corrupt(log, pos, "the record lacks fields its type needs")
    log.lines += 1
    if log.lines == 1:
        return None
    meta_line = b"%016x " % pos + line
    log.meta_size += len(meta_line)
    return meta_line


def _check_torn(log: LogState, pos: int, end: int) -> None:
    """A record at ``pos`` does not check out. If a valid record follows it, this is
    damage in the middle: CorruptedData naming file and line, never a silent skip of
    everything after. Otherwise it is a torn tail, which the caller cuts off."""
    if end - pos > 64 << 20:
        corrupt(log, pos, "an invalid record with more than 64 MiB after it")
    tail = pread_all(log.fd, end - pos, pos)
    nl = tail.find(b"\n")
    while 0 <= nl < len(tail) - 1:
        if record.parse_at(tail, nl + 1).payload is not None:
            corrupt(log, pos, "the record's length or checksum does not match")
        nl = tail.find(b"\n", nl + 1)


def _check_message(log: LogState, head: record.MessageHead, batch: Batch, pos: int) -> None:
    want = log.lin.length + len(batch) + 1
    first = batch[0][2].first if batch else want
    if (
        log.lines == 0
        or head.branch != log.lin.head
        or head.seq != want
        or head.first != first
        or head.last < head.seq
    ):
        corrupt(log, pos, f"message record out of sequence (expected seq {want})")


def truncate(log: LogState, cut: int) -> None:
    """Cut the log back to ``cut`` bytes (synced in fsync mode)."""
    os.ftruncate(log.fd, cut)
    if log.fsync:
        os.fdatasync(log.fd)


def _sidecar_size(path: str, fd: int | None) -> int:
    if fd is not None:
        return os.fstat(fd).st_size
    try:
        return os.stat(path, follow_symlinks=False).st_size
    except FileNotFoundError:
        return 0


def _update_sidecars(log: LogState, owed: _Sidecars) -> None:
    """Bring the sidecars up to date; if the disk refuses, go on with them in memory
    (reading needs no free space), from the part of them that was already right."""
    try:
        _write_sidecars(log, owed.idx, owed.meta, owed.disk_idx, owed.disk_meta)
    except OSError as exc:
        if log.detached:
            raise
        logger.warning(
            "%s: cannot update the session's sidecar files (%s); reading it from the log meanwhile",
            log.path,
            exc.strerror or exc,
        )
        idx_keep = min(owed.disk_idx, log.count) * IDX.size
        meta_keep = min(owed.disk_meta, log.meta_size - sum(map(len, owed.meta)))
        detach(log, idx_keep, meta_keep)
        _write_sidecars(log, owed.idx, owed.meta, idx_keep // IDX.size, meta_keep)


def _note(log: LogState, touch: Touch) -> None:
    try:
        touch(log, log.updated)
    except OSError as exc:
        # Reading must not need free space; the rows only order the listing.
        logger.warning(
            "%s: cannot add the session's listing rows (%s); it may list out of order "
            "until it is written to again or repair is run",
            log.path,
            exc.strerror or exc,
        )


def _write_sidecars(
    log: LogState, idx_out: list[bytes], meta_out: list[bytes], disk_idx: int, disk_meta: int
) -> None:
    if idx_out or disk_idx > log.count:
        fd = idx_file(log)
        if disk_idx > log.count:  # entries for records the log does not have
            os.ftruncate(fd, log.count * IDX.size)
        if idx_out:
            write_all(fd, b"".join(idx_out))
    if meta_out or disk_meta > log.meta_size:
        fd = meta_file(log)
        keep = log.meta_size - sum(map(len, meta_out))
        if disk_meta != keep:
            os.ftruncate(fd, keep)
        if meta_out:
            write_all(fd, b"".join(meta_out))


def remove_files(log: LogState) -> None:
    """Unlink the session's files, the log last (its delete record is the commit point)."""
    for path in (log.idx_path, log.meta_path, log.path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    if log.fsync:
        fsync_dir(os.path.dirname(log.path))
