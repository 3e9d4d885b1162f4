"""SessionLog: one session's append-only record log and its two derived sidecars.

The log (``<id>.log``) is the only source of truth. Line 1 is the session header; then come
message records (one per message, each naming its batch so a half-written batch is
recognisable), checkpoint records, restore records (an undo checkpoint and a new head branch in
one line, so a restore is all-or-nothing) and, last, a delete record. Nothing in it is ever
rewritten; a torn tail left by a crash is cut off under the lock by the next opener.

Two sidecars make reads cheap and are always rebuildable from the log:

* ``<id>.idx``: 32 bytes per message (offset, length, branch, id hash, time), so message
  ``k`` of the log is found with one ``pread`` and ``get_messages(last=n)`` costs O(n);
* ``<id>.meta``: a copy of every checkpoint/restore/delete record with its log offset, so
  opening a session reads the branch table and checkpoints without scanning the messages.

Both are made on first need (the first message, the first checkpoint): a new session is its
log alone, and a missing sidecar reads as an empty one, so a create is one file.

Writers hold an exclusive ``flock`` on the log and write, in order: log line(s), listing
index entries, sidecar entries. With ``durability=fsync`` the log is then synced after the
lock is released, by :mod:`aixgo_backend_file.commit`, before the write is acknowledged
(sidecars and listing lines may reach the disk before the log lines they point at: loading
checks them against the log and rebuilds them). Every
operation first compares the log's size (one ``lseek``) with the size this process last
validated: if they match (the common case) nothing else is read; if not, it parses only the
new bytes (:meth:`SessionLog._catch_up`), adding any sidecar entries a crashed writer did not
get to. A sidecar that disagrees with the log is rebuilt from the log; one the disk will not
let grow (it is full) is kept in memory instead (:mod:`aixgo_backend_file.diskfull`); an
``.idx`` entry that points at the wrong bytes is read around from the log, with a warning.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import os
from collections.abc import Sequence
from typing import Any
from zlib import crc32

from aixgo.clock import to_micros
from aixgo.errors import (
    BackendError,
    CheckpointNotFound,
    ConflictError,
    CorruptedData,
    SessionNotFound,
)
from aixgo.message import Message
from aixgo.session.codec import check_repeat, decode_at, decode_batch, stored_copy
from aixgo.session.kit import stale_seq
from aixgo.session.models import Checkpoint, SessionInfo

from aixgo_backend_file import record
from aixgo_backend_file.diskfull import logger
from aixgo_backend_file.paths import Layout, open_file
from aixgo_backend_file.recovery import Recovery
from aixgo_backend_file.state import (
    CHUNK,
    ID_WINDOW,
    IDX,
    Touch,
    fsync_dir,
    id_hash,
    pread_all,
    write_all,
)

__all__ = ["SessionLog"]


class SessionLog(Recovery):
    """The in-process view of one session's files. Use it with the store's thread lock held;
    every public method takes the file lock itself."""

    @classmethod
    def create(cls, layout: Layout, info: SessionInfo, *, fsync: bool, touch: Touch) -> SessionLog:
        """Write a new session's log (its header is its only line)."""
        new_shard = layout.ensure_shard(info.id)
        path = layout.session_base(info.id) + "log"
        try:
            fd = open_file(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, "session log")
        except FileExistsError:
            raise ConflictError(f"session {info.id!r} exists already") from None
        log = cls(layout, info.id, fd, fsync=fsync)
        try:
            # Held until the create is complete: an opener that finds the file meanwhile
            # waits, then sees it whole or unlinked, never a session that is taken back.
            fcntl.flock(fd, fcntl.LOCK_EX)
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
            write_all(fd, data)
            log._apply_other(header, 0)
            log.size = len(data)
            log.lines = 1  # the header: catching up with another writer checks against it
            touch(log, log.updated)
            if fsync:
                log.sync()
                shard = os.path.dirname(path)
                fsync_dir(shard)
                if new_shard:
                    fsync_dir(os.path.dirname(shard))
        except BaseException:
            log._unmake()
            raise
        fcntl.flock(fd, fcntl.LOCK_UN)
        return log

    def _unmake(self) -> None:
        """Take back a create that failed part-way (its lock held): no file of it remains,
        so it is neither listed nor found."""
        with contextlib.suppress(OSError):
            os.unlink(self.path)
            if self.fsync:
                fsync_dir(os.path.dirname(self.path))
        self.close()

    @classmethod
    def scan(cls, layout: Layout, session_id: str) -> SessionLog:
        """Read a session from its log alone, writing nothing anywhere (``repair --check``):
        its sidecars as they should be are in memory, and :attr:`problems` says where the
        files on disk differ. SessionNotFound if the log is not a session (any more)."""
        path = layout.session_base(session_id) + "log"
        try:
            fd = open_file(path, os.O_RDONLY, "session log")
        except FileNotFoundError:
            raise SessionNotFound(session_id) from None
        log = cls(layout, session_id, fd, fsync=False)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            log._detach(0, 0)
            log._catch_up(lambda _log, _ts: None, cut=False)
            if log.lines == 0:
                raise SessionNotFound(session_id, "its creation did not complete")
            if log.deleted:
                raise SessionNotFound(session_id, "its delete did not complete")
            log.problems = log._differences()
        except BaseException:
            log.close()
            raise
        fcntl.flock(fd, fcntl.LOCK_UN)
        return log

    def _differences(self) -> list[str]:
        """Where the files on disk differ from what this scan derived from the log."""
        out = []
        end = os.fstat(self.fd).st_size
        if end > self.size:
            out.append(
                f"{self.path}: {end - self.size} bytes from byte {self.size} on are a record "
                "torn by a crash; repair cuts them off"
            )
        sidecars = ((self.idx_path, self.idx_fd, IDX.size), (self.meta_path, self.meta_fd, 0))
        for path, fd, unit in sidecars:
            assert fd is not None
            why = _compare(path, fd, unit)
            if why:
                out.append(f"{path}: {why}; the index needs repair")
        return out

    @classmethod
    def open(cls, layout: Layout, session_id: str, *, fsync: bool, touch: Touch) -> SessionLog:
        """Open an existing session, validating and repairing its tail; SessionNotFound if
        it does not exist (or was deleted)."""
        layout.ensure_shard(session_id, create=False)
        path = layout.session_base(session_id) + "log"
        try:
            fd = open_file(path, os.O_RDWR | os.O_APPEND, "session log")
        except FileNotFoundError:
            raise SessionNotFound(session_id) from None
        log = cls(layout, session_id, fd, fsync=fsync)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                log._load(touch)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except BaseException:
            log.close()
            raise
        return log

    def close(self) -> None:
        for fd in (self.fd, self.idx_fd, self.meta_fd):
            if fd is not None and fd >= 0:
                os.close(fd)
        self.fd = -1
        self.idx_fd = self.meta_fd = None

    def lock(self, touch: Touch, *, exclusive: bool) -> None:
        """Take the file lock and bring this view up to date; release with :meth:`unlock`.

        The log only grows, and only under the exclusive lock, so "same size as last time"
        proves nothing changed: the hot path costs one ``lseek``. A log is only ever unlinked
        after it grew (a delete writes its record first), so the link count is looked at
        only when the size moved."""
        fd = self.fd
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            if os.lseek(fd, 0, os.SEEK_END) != self.size:
                if not exclusive:  # repairs need the exclusive lock; flock converts in place
                    fcntl.flock(fd, fcntl.LOCK_EX)
                unlinked = os.fstat(fd).st_nlink == 0
                self._catch_up(touch)
                if unlinked:
                    self.deleted = True  # unlinked by a delete
            if self.deleted:
                raise SessionNotFound(self.id)
        except BaseException:
            fcntl.flock(fd, fcntl.LOCK_UN)
            raise

    def unlock(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)

    def _locate(self, ordinal: int) -> tuple[int, int]:
        branch = bisect.bisect_right(self.first_ord, ordinal) - 1
        return branch, self.lin.branches[branch].fork_seq + 1 + ordinal - self.first_ord[branch]

    def _ordinal(self, branch: int, seq: int) -> int:
        return self.first_ord[branch] + seq - self.lin.branches[branch].fork_seq - 1

    def messages(self, last: int | None) -> list[Message]:
        """The current history's last ``last`` messages (all if None), oldest first."""
        out: list[Message] = []
        for branch, lo, hi in self.lin.tail_spans(last):
            first = self._ordinal(branch, lo)
            raw = pread_all(self._idx(), (hi - lo + 1) * IDX.size, first * IDX.size)
            entries = list(IDX.iter_unpack(raw))
            self._read_entries(entries, first, lo, out)
        return out

    def _read_entries(
        self,
        entries: list[tuple[int, ...]],
        first: int,
        seq: int,
        out: list[Message],
    ) -> None:
        """Decode the records ``entries`` (``.idx`` entries from ordinal ``first``, seq
        ``seq`` on) point at. An entry that points at the wrong bytes is derived data gone
        bad, not a damaged log: the records are then found from the log itself."""
        done = len(out)
        try:
            self._decode_entries(entries, first, seq, out)
        except CorruptedData:
            fixed = self._entries_from_log(entries, first)
            if fixed is None:
                raise
            del out[done:]
            self._decode_entries(fixed, first, seq, out)

    def _entries_from_log(
        self, entries: list[tuple[int, ...]], first: int
    ) -> list[tuple[int, ...]] | None:
        """``entries`` as the log says they are, if they differ from what ``.idx`` said."""
        if not self._reload_from_log():
            return None
        raw = pread_all(self._idx(), len(entries) * IDX.size, first * IDX.size)
        fixed = list(IDX.iter_unpack(raw))
        pairs = enumerate(zip(entries, fixed, strict=False))
        bad = next((k for k, (was, right) in pairs if was != right), None)
        if bad is None:
            return None
        logger.warning(
            "%s: entry %d does not match the log; reading the session from its log (the index "
            "needs repair: run `aixgo file repair`)",
            self.idx_path,
            first + bad + 1,
        )
        return fixed

    def _decode_entries(
        self,
        entries: list[tuple[int, ...]],
        first: int,
        seq: int,
        out: list[Message],
    ) -> None:
        data: list[bytes] = []
        i = 0
        while i < len(entries):
            start = entries[i][0]
            j = i
            while j + 1 < len(entries) and entries[j + 1][0] + entries[j + 1][1] - start <= CHUNK:
                j += 1
            stop = entries[j][0] + entries[j][1]
            if not start < stop <= self.size:
                raise CorruptedData(
                    f"{self.idx_path}: entry {first + i + 1} points outside the log"
                )
            buf = pread_all(self.fd, stop - start, start)
            for k in range(i, j + 1):
                offset, length = entries[k][0], entries[k][1]
                found = record.message_at(buf, offset - start, length)
                if found is None or found[0] != seq + k:
                    line = 2 + first + k + bisect.bisect_left(self.meta_offsets, offset)
                    raise CorruptedData(
                        f"{self.path}, line {line}: message record {first + k + 1} fails its "
                        "checksum (the disk returned damaged data); run `aixgo file repair`"
                    )
                data.append(found[1])
            i = j + 1
        out += decode_batch(data, lambda k: decode_at(data[k], seq + k, self.path), first_seq=seq)

    def _message_at(self, ordinal: int, seq: int) -> Message:
        raw = os.pread(self._idx(), IDX.size, ordinal * IDX.size)
        entry = IDX.unpack(raw)
        out: list[Message] = []
        self._read_entries([entry], ordinal, seq, out)
        return out[0]

    def _load_window(self) -> dict[int, list[int]]:
        if self.window is None:
            window: dict[int, list[int]] = {}
            lo = max(0, self.count - ID_WINDOW)
            if self.count:
                raw = pread_all(self._idx(), (self.count - lo) * IDX.size, lo * IDX.size)
                for k, entry in enumerate(IDX.iter_unpack(raw)):
                    window.setdefault(entry[3], []).append(lo + k)
            self.window = window
        elif len(self.window) > 2 * ID_WINDOW:
            self.window = None
            return self._load_window()
        return self.window

    def find(self, message: Message, idhash: int) -> Message | None:
        """The stored copy of ``message`` if its id is in the current history."""
        ords = self._load_window().get(idhash)
        if not ords:
            return None
        for ordinal in reversed(ords):
            branch, seq = self._locate(ordinal)
            if self.lin.is_live(branch, seq):
                stored = self._message_at(ordinal, seq)
                if stored.id == message.id:
                    return stored
        return None

    def append(
        self,
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
            return self._append_one(messages[0], encoded[0], expected_seq, now, touch, sync)
        hashes = [id_hash(m.id) for m in messages]
        known = self._known(messages, hashes) if self.count else {}
        length = self.lin.length
        if len(known) < len(messages) and expected_seq is not None and expected_seq != length:
            raise stale_seq(self.id, expected_seq, length)
        if known:
            fresh = [i for i, m in enumerate(messages) if m.id not in known]
            if not fresh:
                return [known[m.id] for m in messages]
        else:
            fresh = list(range(len(messages)))
        ts = self.updated if self.updated > now else now
        first = length + 1
        lines, entries = self._batch_lines(fresh, encoded, hashes, first, ts)
        self._write_log(lines)
        if sync:
            self._sync_to(self.size + len(lines))
        window = self.window
        if window is not None:
            for k, i in enumerate(fresh):
                window.setdefault(hashes[i], []).append(self.count + k)
        self.count += len(fresh)
        self.lin.append(len(fresh))
        self.updated = ts
        self.size += len(lines)
        self.lines += len(fresh)
        self._info = None
        touch(self, ts)
        idx_fd = self.idx_fd if self.idx_fd is not None else self._idx()
        write_all(idx_fd, entries)
        return _stored(messages, known, first)

    def _known(self, messages: Sequence[Message], hashes: list[int]) -> dict[str, Message]:
        """The stored copies of the batch's messages already in the history, by id."""
        known: dict[str, Message] = {}
        for m, h in zip(messages, hashes, strict=True):
            found = self.find(m, h)
            if found is not None:
                known[m.id] = check_repeat(self.id, found, m)
        return known

    def _batch_lines(
        self, fresh: list[int], encoded: list[bytes], hashes: list[int], first: int, ts: int
    ) -> tuple[bytes, bytes]:
        """The log lines and ``.idx`` entries of a batch's fresh messages, numbered from
        ``first`` on the head branch."""
        branch, last = self.lin.head, first + len(fresh) - 1
        lines: list[bytes] = []
        entries: list[bytes] = []
        offset = self.size
        meta_size = self.meta_size
        pack = IDX.pack
        fmt = record.MESSAGE  # record.message_payload and record.line, inlined: a hot path
        for seq, i in enumerate(fresh, first):
            payload = fmt % (branch, first, seq, last, ts, hashes[i], encoded[i])
            ln = b"%08x %08x %b\n" % (len(payload), crc32(payload), payload)
            lines.append(ln)
            entries.append(pack(offset, len(ln), branch, hashes[i], ts, meta_size))
            offset += len(ln)
        return b"".join(lines), b"".join(entries)

    def _append_one(
        self,
        message: Message,
        data: bytes,
        expected_seq: int | None,
        now: int,
        touch: Touch,
        sync: bool,
    ) -> list[Message]:
        """:meth:`append` of one message, without the batch bookkeeping (the common call)."""
        idhash = id_hash(message.id)
        if self.count:
            found = self.find(message, idhash)
            if found is not None:
                return [check_repeat(self.id, found, message)]
        seq = self.lin.length + 1
        if expected_seq is not None and expected_seq != seq - 1:
            raise stale_seq(self.id, expected_seq, seq - 1)
        ts = self.updated if self.updated > now else now
        branch = self.lin.head
        payload = record.MESSAGE % (branch, seq, seq, seq, ts, idhash, data)
        ln = b"%08x %08x %b\n" % (len(payload), crc32(payload), payload)
        offset = self.size
        self._write_log(ln)
        if sync:
            self._sync_to(offset + len(ln))
        window = self.window
        if window is not None:
            ords = window.get(idhash)
            if ords is None:
                window[idhash] = [self.count]
            else:
                ords.append(self.count)
        self.count += 1
        self.lin.append(1)
        self.updated = ts
        self.size = offset + len(ln)
        self.lines += 1
        self._info = None
        touch(self, ts)
        idx_fd = self.idx_fd if self.idx_fd is not None else self._idx()
        write_all(idx_fd, IDX.pack(offset, len(ln), branch, idhash, ts, self.meta_size))
        return [stored_copy(message, seq)]

    def add_checkpoint(self, checkpoint_id: str, label: str | None, now: int) -> Checkpoint:
        if checkpoint_id in self.checkpoints:
            raise ConflictError(f"checkpoint {checkpoint_id!r} exists already")
        branch, seq = self.lin.head_ref()
        rec = {
            "t": "cp",
            "id": checkpoint_id,
            "b": branch,
            "s": seq,
            "ts": now,
            "label": label,
            "o": self.count,
        }
        self._write_other(rec)
        return self.checkpoint(checkpoint_id)

    def restore(self, checkpoint_id: str, undo_id: str, now: int, touch: Touch) -> Checkpoint:
        target = self.checkpoints.get(checkpoint_id)
        if target is None:
            raise CheckpointNotFound(checkpoint_id, self.id)
        if undo_id in self.checkpoints:
            raise ConflictError(f"checkpoint {undo_id!r} exists already")
        ub, us = self.lin.head_ref()
        ts = max(now, self.updated)
        rec = {
            "t": "restore",
            "to": checkpoint_id,
            "undo": undo_id,
            "ub": ub,
            "us": us,
            "nb": len(self.lin.branches),
            "p": self.lin.owner(target.branch, target.seq),
            "fork": target.seq,
            "o": self.count,
            "ts": ts,
        }
        self._write_other(rec)
        touch(self, ts)
        return self.checkpoint(undo_id)

    def delete(self, now: int) -> None:
        """Write the delete record (the commit point), then remove the files."""
        self._write_other({"t": "deleted", "ts": now, "o": self.count}, meta=False)
        self._remove_files()

    def mark(self) -> tuple[int, int, int]:
        """Where this view's files end now, for :meth:`undo`."""
        return self.size, self.count, self.meta_size

    def undo(self, mark: tuple[int, int, int]) -> None:
        """Take back a write that failed part-way (exclusive lock held): cut the log and the
        sidecars back to ``mark``. Shrinking needs no free space. The view is stale after
        it: the store reopens the session."""
        size, count, meta_size = mark
        self.stale = True
        try:
            self._truncate(size)
        except OSError as exc:  # the line stays, whole: a retry with its ids finds it
            logger.warning("%s: cannot take back a failed write (%s)", self.path, exc)
        for fd, keep in ((self.idx_fd, count * IDX.size), (self.meta_fd, meta_size)):
            if fd is not None:
                with contextlib.suppress(OSError):  # the next open checks them anyway
                    if os.fstat(fd).st_size > keep:
                        os.ftruncate(fd, keep)

    def _write_other(self, rec: dict[str, Any], *, meta: bool = True) -> None:
        data = record.line(record.other_payload(rec))
        offset = self.size
        self._write_log(data)
        self._apply_other(rec, offset)
        self.size += len(data)
        self.lines += 1
        if meta:
            meta_line = b"%016x " % offset + data
            write_all(self._meta(), meta_line)
            self.meta_size += len(meta_line)

    def _write_log(self, data: bytes) -> None:
        try:
            write_all(self.fd, data)
        except OSError:
            # ENOSPC and friends: take back a partial line so the log stays well-formed.
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.size)
            raise

    def sync(self) -> None:
        """Make the log durable up to what this process has read or written of it (the
        sidecars are rebuildable, so they are not synced)."""
        self._sync_to(self.size)

    def _sync_to(self, end: int) -> None:
        """``fdatasync`` the log, whose first ``end`` bytes are validated or written."""
        try:
            os.fdatasync(self.fd)
        except OSError as exc:
            # e.g. EIO. Linux reports a failed writeback once: a later sync of the same
            # pages may succeed without them being on disk, so this view is not trusted
            # again (the store drops it; the next operation reopens the session).
            self.sync_error = exc
            raise BackendError(
                f"fdatasync of {self.path} failed ({exc}): the write may not be on disk"
            ) from exc
        self.synced = end


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
