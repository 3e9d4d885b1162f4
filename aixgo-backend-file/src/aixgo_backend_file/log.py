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

Writers hold an exclusive ``flock`` on the log and write, in order: log line(s), listing index
entries, sidecar entries. Every operation first compares the log's size with the size this
process last validated: if they match (the common case) nothing else is read; if not, it parses
only the new bytes (:meth:`SessionLog._catch_up`), adding any sidecar entries a crashed writer
did not get to. A sidecar that disagrees with the log is rebuilt from the log.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from aixgo.errors import (
    BackendError,
    CheckpointNotFound,
    ConflictError,
    CorruptedData,
    SessionNotFound,
)
from aixgo.message import Message
from aixgo.session.codec import decode_message
from aixgo.session.lineage import Branch, Lineage
from aixgo.session.models import Checkpoint, SessionInfo

from aixgo_backend_file import record
from aixgo_backend_file.paths import Layout, open_file
from aixgo_backend_file.timefmt import from_micros

__all__ = ["IDX", "ID_WINDOW", "SessionLog", "id_hash"]

#: One ``.idx`` entry: offset, line length, branch, message-id hash, time (µs), and the size
#: ``.meta`` had then (so a lost or short ``.meta`` is noticed rather than believed).
IDX = struct.Struct("<QIIQqQ")
#: Idempotent appends look ids up among the last this-many messages written to the log (the
#: whole history for any session shorter than that). Memory: ~100 bytes per id, per session
#: a process appends to.
ID_WINDOW = 65_536
_CHUNK = 4 << 20
_NULL_SEQ = b',"seq":null}'

#: Called after records are written and before sidecars: ``(log, updated_at_micros)``.
Touch = Callable[["SessionLog", int], None]


def id_hash(message_id: str) -> int:
    """A stable 64-bit hash of a message id (Python's ``hash`` differs per process)."""
    return int.from_bytes(hashlib.blake2b(message_id.encode(), digest_size=8).digest(), "little")


@dataclass(slots=True)
class _Cp:
    branch: int
    seq: int
    ts: int
    label: str | None


class _Rebuild(Exception):
    """A sidecar disagrees with the log: rebuild both from the log."""


class SessionLog:
    """The in-process view of one session's files. Use it with the store's thread lock held;
    every public method takes the file lock itself."""

    def __init__(self, layout: Layout, session_id: str, fd: int, *, fsync: bool) -> None:
        self.id = session_id
        self.path = layout.session_file(session_id, "log")
        self.idx_path = layout.session_file(session_id, "idx")
        self.meta_path = layout.session_file(session_id, "meta")
        self.fd = fd
        self.fsync = fsync
        self.idx_fd: int | None = None
        self.meta_fd: int | None = None
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
        self.checkpoints: dict[str, _Cp] = {}
        self.deleted = False
        self.window: dict[int, list[int]] | None = None
        self._info: SessionInfo | None = None

    # ---------------------------------------------------------------- opening and closing

    @classmethod
    def create(cls, layout: Layout, info: SessionInfo, *, fsync: bool, touch: Touch) -> SessionLog:
        """Write a new session's log (its header is its only line)."""
        new_shard = layout.ensure_shard(info.id)
        path = layout.session_file(info.id, "log")
        try:
            fd = open_file(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, "session log")
        except FileExistsError:
            raise ConflictError(f"session {info.id!r} exists already") from None
        log = cls(layout, info.id, fd, fsync=fsync)
        try:
            header = {
                "t": "session",
                "v": 1,
                "id": info.id,
                "agent": info.agent,
                "user_id": info.user_id,
                "created_at": _micros(info),
                "metadata": info.metadata,
            }
            data = record.line(record.other_payload(header))
            _write_all(fd, data)
            log._apply_other(header, 0)
            log.size = len(data)
            touch(log, log.updated)
            if fsync:
                os.fdatasync(fd)
                _fsync_dir(path.parent)
                if new_shard:
                    _fsync_dir(path.parent.parent)
        except BaseException:
            log.close()
            raise
        return log

    @classmethod
    def open(cls, layout: Layout, session_id: str, *, fsync: bool, touch: Touch) -> SessionLog:
        """Open an existing session, validating and repairing its tail; SessionNotFound if
        it does not exist (or was deleted)."""
        layout.ensure_shard(session_id, create=False)
        path = layout.session_file(session_id, "log")
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

    # ---------------------------------------------------------------- locking

    def lock(self, touch: Touch, *, exclusive: bool) -> None:
        """Take the file lock and bring this view up to date; release with :meth:`unlock`.

        The log only grows, and only under the exclusive lock, so "same size as last time"
        proves nothing changed: the hot path costs one ``fstat``."""
        fcntl.flock(self.fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            st = os.fstat(self.fd)
            if st.st_size != self.size or st.st_nlink == 0:
                if not exclusive:  # repairs need the exclusive lock; flock converts in place
                    fcntl.flock(self.fd, fcntl.LOCK_EX)
                self._catch_up(touch)
                if st.st_nlink == 0:
                    self.deleted = True  # unlinked by a delete
            if self.deleted:
                raise SessionNotFound(self.id)
        except BaseException:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            raise

    def unlock(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)

    # ---------------------------------------------------------------- loading

    def _load(self, touch: Touch) -> None:
        """Cold open under the exclusive lock: header from the log, branch table and
        checkpoints from ``.meta``, message count from ``.idx``; then validate the tail."""
        if os.fstat(self.fd).st_nlink == 0:
            raise SessionNotFound(self.id)
        try:
            self._load_sidecars()
        except _Rebuild:
            self._rebuild()
        self._catch_up(touch)
        if self.deleted:
            self._remove_files()
            raise SessionNotFound(self.id)

    def _load_sidecars(self) -> None:
        header = self._read_record(0)
        if header is None:
            # A crash between creating the file and writing its header: never acknowledged.
            raise SessionNotFound(self.id, "its creation did not complete")
        rec = json.loads(header[0])
        if rec.get("t") != "session":
            raise _Rebuild  # let the full scan report it with file and line
        self._apply_other(rec, 0)
        self.size = header[1]
        self.lines = 1
        covered = self.size
        self.meta_fd = self._open_sidecar(self.meta_path, create=False)
        if self.meta_fd is not None:
            covered = max(covered, self._load_meta(self.meta_fd))
        self.idx_fd = self._open_sidecar(self.idx_path, create=False)
        if self.idx_fd is not None:
            covered = max(covered, self._load_idx(self.idx_fd))
        if covered > os.fstat(self.fd).st_size or self.meta_count > self.count:
            raise _Rebuild  # the sidecars disagree with each other or with the log
        self.size = covered
        self.lines = 1 + self.count + len(self.meta_offsets)
        self._fix_lengths()

    def _load_meta(self, fd: int) -> int:
        buf = _pread_all(fd, os.fstat(fd).st_size, 0)
        pos = end = 0
        while pos < len(buf):
            parsed = record.parse_at(buf, pos + 17) if len(buf) - pos > 17 else None
            if parsed is None or parsed.payload is None:
                if parsed is not None and parsed.complete:
                    raise _Rebuild
                os.ftruncate(fd, pos)  # a torn sidecar line: the log still has the record
                break
            try:
                offset = int(buf[pos : pos + 16], 16)
                self._apply_other(json.loads(parsed.payload), offset)
            except (ValueError, KeyError, CorruptedData):
                raise _Rebuild from None
            end = offset + parsed.end - pos - 17
            pos = parsed.end
        self.meta_size = pos
        return end

    def _load_idx(self, fd: int) -> int:
        size = os.fstat(fd).st_size
        if size % IDX.size:
            size -= size % IDX.size
            os.ftruncate(fd, size)
        self.count = size // IDX.size
        if not self.count:
            return 0
        entry: tuple[int, ...] = IDX.unpack(os.pread(fd, IDX.size, size - IDX.size))
        offset, length, branch, _, ts, meta_size = entry
        if meta_size > self.meta_size:
            raise _Rebuild
        got = self._read_record(offset)
        head = record.parse_message(got[0]) if got is not None else None
        if head is None or got is None or got[1] != offset + length or head.branch != branch:
            raise _Rebuild
        if head.seq != head.last:
            raise _Rebuild  # ends inside a batch: only a rebuild tells whether it completed
        self.updated = max(self.updated, ts)
        return offset + length

    def _fix_lengths(self) -> None:
        branches = self.lin.branches
        for b, br in enumerate(branches):
            nxt = self.first_ord[b + 1] if b + 1 < len(branches) else self.count
            br.length = br.fork_seq + nxt - self.first_ord[b]

    def _rebuild(self) -> None:
        """Forget the sidecars and re-derive everything from the log (O(log size))."""
        for fd in (self.idx_fd, self.meta_fd):
            if fd is not None:
                os.ftruncate(fd, 0)
        self._reset()

    def _open_sidecar(self, path: Path, *, create: bool) -> int | None:
        flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0)
        try:
            return open_file(path, flags, "session sidecar")
        except FileNotFoundError:
            return None

    def _read_record(self, offset: int) -> tuple[bytes, int] | None:
        """The valid record at ``offset`` of the log and its end, or None."""
        head = os.pread(self.fd, 4096, offset)
        size = record.record_size(head[: record.PREFIX])
        if size is None:
            return None
        if size > len(head):
            head += _pread_all(self.fd, size - len(head), offset + len(head))
        buf = head
        parsed = record.parse_at(buf, 0)
        return (parsed.payload, offset + parsed.end) if parsed.payload is not None else None

    # ---------------------------------------------------------------- catching up

    def _catch_up(self, touch: Touch) -> None:
        """Apply log bytes past :attr:`size` (exclusive lock held): what other processes
        wrote, or the tail a crashed writer left. Cuts a torn tail; reports damage in the
        middle with file and line; writes sidecar entries the writer did not."""
        end = os.fstat(self.fd).st_size
        if end < self.size:
            raise CorruptedData(f"{self.path} shrank below data already read; run repair")
        disk_idx = self._sidecar_size(self.idx_path, self.idx_fd) // IDX.size
        disk_meta = self._sidecar_size(self.meta_path, self.meta_fd)
        meta0 = self.meta_size
        idx_out: list[bytes] = []
        meta_out: list[bytes] = []
        batch: list[tuple[int, int, record.MessageHead]] = []
        torn = False
        pos = base = self.size
        buf = b""
        while pos < end:
            rel = pos - base
            parsed = record.parse_at(buf, rel)
            if parsed.payload is None and not parsed.complete and base + len(buf) < end:
                want = max(_CHUNK, parsed.end - rel)
                buf, base = _pread_all(self.fd, min(want, end - pos), pos), pos
                continue
            if parsed.payload is None:
                self._check_torn(pos, end)
                torn = True
                break
            line_end = base + parsed.end
            head = record.parse_message(parsed.payload)
            if head is not None:
                self._check_message(head, batch, pos)
                batch.append((pos, line_end - pos, head))
                if head.seq == head.last:
                    for off, length, h in batch:
                        self._apply_message(h.idhash, h.ts)
                        if self.count > disk_idx:
                            idx_out.append(
                                IDX.pack(off, length, h.branch, h.idhash, h.ts, self.meta_size)
                            )
                    self.lines += len(batch)
                    self.size = line_end
                    batch = []
            else:
                if batch:
                    self._corrupt(pos, "a record interrupts a batch of messages")
                try:
                    rec = json.loads(parsed.payload)
                    rec.get("t")
                except (ValueError, AttributeError):
                    self._corrupt(pos, "the record is not JSON")
                if self.lines == 0 and rec.get("t") != "session":
                    self._corrupt(pos, "the first record is not a session header")
                if self.lines and rec.get("t") == "session":
                    self._corrupt(pos, "a second session header")
                try:
                    self._apply_other(rec, pos)
                except (KeyError, TypeError, ValueError, AttributeError):
                    self._corrupt(pos, "the record lacks fields its type needs")
                if self.lines:
                    meta_line = b"%016x " % pos + buf[rel : parsed.end]
                    self.meta_size += len(meta_line)
                    if self.meta_size > disk_meta:
                        meta_out.append(meta_line)
                self.lines += 1
                self.size = line_end
            pos = line_end
        # A half-written batch (the log ends inside it) was never acknowledged: drop it whole.
        torn = torn or bool(batch)
        if torn:
            self._truncate(self.size)
        self._write_sidecars(idx_out, meta_out, disk_idx, disk_meta, meta0)
        if torn or idx_out or meta_out:
            touch(self, self.updated)  # the crashed writer may not have reached the indexes

    def _check_torn(self, pos: int, end: int) -> None:
        """A record at ``pos`` does not check out. If a valid record follows it, this is
        damage in the middle: CorruptedData naming file and line, never a silent skip of
        everything after. Otherwise it is a torn tail, which the caller cuts off."""
        if end - pos > 64 << 20:
            self._corrupt(pos, "an invalid record with more than 64 MiB after it")
        tail = _pread_all(self.fd, end - pos, pos)
        nl = tail.find(b"\n")
        while 0 <= nl < len(tail) - 1:
            if record.parse_at(tail, nl + 1).payload is not None:
                self._corrupt(pos, "the record's length or checksum does not match")
            nl = tail.find(b"\n", nl + 1)

    def _truncate(self, cut: int) -> None:
        os.ftruncate(self.fd, cut)
        if self.fsync:
            os.fdatasync(self.fd)

    def _check_message(
        self, head: record.MessageHead, batch: list[tuple[int, int, record.MessageHead]], pos: int
    ) -> None:
        want = self.lin.length + len(batch) + 1
        first = batch[0][2].first if batch else want
        if (
            self.lines == 0
            or head.branch != self.lin.head
            or head.seq != want
            or head.first != first
            or head.last < head.seq
        ):
            self._corrupt(pos, f"message record out of sequence (expected seq {want})")

    def _corrupt(self, pos: int, why: str) -> NoReturn:
        raise CorruptedData(
            f"{self.path}, line {self.lines + 1} (byte {pos}): {why}. Records before it are "
            "intact; inspect the file, or move it aside and run "
            "`python -m aixgo_backend_file.repair` to rebuild the indexes"
        )

    def _sidecar_size(self, path: Path, fd: int | None) -> int:
        if fd is not None:
            return os.fstat(fd).st_size
        try:
            return os.stat(path, follow_symlinks=False).st_size
        except FileNotFoundError:
            return 0

    def _write_sidecars(
        self, idx_out: list[bytes], meta_out: list[bytes], disk_idx: int, disk_meta: int, meta0: int
    ) -> None:
        if idx_out or disk_idx > self.count:
            fd = self._idx()
            if disk_idx > self.count:  # entries for records the log does not have
                os.ftruncate(fd, self.count * IDX.size)
            if idx_out:
                _write_all(fd, b"".join(idx_out))
        if meta_out or disk_meta > self.meta_size:
            fd = self._meta()
            keep = self.meta_size - sum(map(len, meta_out))
            if disk_meta != keep:
                os.ftruncate(fd, keep)
            if meta_out:
                _write_all(fd, b"".join(meta_out))

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

    # ---------------------------------------------------------------- applying records

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
            self.checkpoints[rec["id"]] = _Cp(rec["b"], rec["s"], rec["ts"], rec["label"])
        elif kind == "restore":
            if rec["nb"] != len(self.lin.branches):
                raise CorruptedData(f"{self.path}: restore record at byte {offset} is out of order")
            self.checkpoints[rec["undo"]] = _Cp(rec["ub"], rec["us"], rec["ts"], "before-restore")
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

    # ---------------------------------------------------------------- reading

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
            raw = _pread_all(self._idx(), (hi - lo + 1) * IDX.size, first * IDX.size)
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
        i = 0
        while i < len(entries):
            start = entries[i][0]
            j = i
            while j + 1 < len(entries) and entries[j + 1][0] + entries[j + 1][1] - start <= _CHUNK:
                j += 1
            stop = entries[j][0] + entries[j][1]
            buf = _pread_all(self.fd, stop - start, start)
            for k in range(i, j + 1):
                offset, length = entries[k][0], entries[k][1]
                out.append(self._decode(buf, offset, start, length, first + k, seq + k))
            i = j + 1

    def _decode(
        self, buf: bytes, offset: int, start: int, length: int, ordinal: int, seq: int
    ) -> Message:
        rel = offset - start
        parsed = record.parse_at(buf, rel)
        head = record.parse_message(parsed.payload) if parsed.payload is not None else None
        if head is None or parsed.end - rel != length:
            line = 2 + ordinal + bisect.bisect_left(self.meta_offsets, offset)
            raise CorruptedData(
                f"{self.path}, line {line}: message record {ordinal + 1} fails its checksum "
                "(the disk returned damaged data); run `python -m aixgo_backend_file.repair`"
            )
        data = head.data
        if data.endswith(_NULL_SEQ):
            return decode_message(data[:-5] + b"%d}" % seq, str(self.path))
        return decode_message(data, str(self.path)).model_copy(update={"seq": seq})

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
                raw = _pread_all(self._idx(), (self.count - lo) * IDX.size, lo * IDX.size)
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

    def checkpoint(self, checkpoint_id: str) -> Checkpoint:
        cp = self.checkpoints.get(checkpoint_id)
        if cp is None:
            raise CheckpointNotFound(checkpoint_id, self.id)
        return self._cp_model(checkpoint_id, cp)

    def _cp_model(self, checkpoint_id: str, cp: _Cp) -> Checkpoint:
        return Checkpoint(
            id=checkpoint_id,
            session_id=self.id,
            seq=cp.seq,
            created_at=from_micros(cp.ts),
            label=cp.label,
        )

    def list_checkpoints(self) -> list[Checkpoint]:
        return [self._cp_model(k, cp) for k, cp in self.checkpoints.items()]

    # ---------------------------------------------------------------- writing

    def append(
        self,
        messages: Sequence[Message],
        encoded: list[bytes],
        expected_seq: int | None,
        now: int,
        touch: Touch,
    ) -> list[Message]:
        """Append under the exclusive lock (held by the caller)."""
        hashes = [id_hash(m.id) for m in messages]
        known: dict[str, Message] = {}
        if self.count:
            for m, h in zip(messages, hashes, strict=True):
                found = self.find(m, h)
                if found is not None:
                    known[m.id] = found
        length = self.lin.length
        if len(known) < len(messages) and expected_seq is not None and expected_seq != length:
            raise ConflictError(
                f"session {self.id!r} has {length} messages, not {expected_seq}: "
                "another writer appended first; re-read the history and retry",
                expected_seq=expected_seq,
                actual_seq=length,
            )
        fresh = [i for i, m in enumerate(messages) if m.id not in known]
        if not fresh:
            return [known[m.id] for m in messages]
        ts = max(now, self.updated)
        branch, first = self.lin.head, length + 1
        last = first + len(fresh) - 1
        lines: list[bytes] = []
        entries: list[bytes] = []
        offset = self.size
        for k, i in enumerate(fresh):
            ln = record.line(
                record.message_payload(branch, first, first + k, last, ts, hashes[i], encoded[i])
            )
            lines.append(ln)
            entries.append(IDX.pack(offset, len(ln), branch, hashes[i], ts, self.meta_size))
            offset += len(ln)
        self._write_log(b"".join(lines) if len(lines) > 1 else lines[0])
        window = self.window
        for i in fresh:
            if window is not None:
                window.setdefault(hashes[i], []).append(self.count)
            self.count += 1
        self.lin.append(len(fresh))
        self.updated = ts
        self.size = offset
        self.lines += len(fresh)
        self._info = None
        touch(self, ts)
        _write_all(self._idx(), b"".join(entries) if len(entries) > 1 else entries[0])
        out: list[Message] = []
        seq = first
        for m in messages:
            if m.id in known:
                out.append(known[m.id])
            else:
                out.append(m.model_copy(update={"seq": seq}))
                seq += 1
        return out

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

    def _remove_files(self) -> None:
        for path in (self.idx_path, self.meta_path, self.path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        if self.fsync:
            _fsync_dir(self.path.parent)

    def _write_other(self, rec: dict[str, Any], *, meta: bool = True) -> None:
        data = record.line(record.other_payload(rec))
        offset = self.size
        self._write_log(data)
        self._apply_other(rec, offset)
        self.size += len(data)
        self.lines += 1
        if meta:
            meta_line = b"%016x " % offset + data
            _write_all(self._meta(), meta_line)
            self.meta_size += len(meta_line)

    def _write_log(self, data: bytes) -> None:
        try:
            _write_all(self.fd, data)
        except (OSError, BackendError):
            # ENOSPC and friends: take back a partial line so the log stays well-formed.
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.size)
            raise

    def sync(self) -> None:
        """``durability=fsync``: make the log's new lines durable (the sidecars are
        rebuildable, so they are not synced)."""
        os.fdatasync(self.fd)


def _micros(info: SessionInfo) -> int:
    from aixgo_backend_file.timefmt import to_micros

    return to_micros(info.created_at)


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written != len(data):
        # Regular files only write short when the disk is full; never leave half a line.
        raise BackendError(
            f"short write ({written} of {len(data)} bytes): is the disk full?"
        ) from OSError(errno.ENOSPC, "short write")


def _pread_all(fd: int, size: int, offset: int) -> bytes:
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
