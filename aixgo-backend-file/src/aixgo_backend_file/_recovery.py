"""Recovery: opening a session log cold, catching up with other writers, and repairing.

Loading reads the header from the log, the branch table and checkpoints from ``.meta`` and
the message count from ``.idx`` (never the messages); each sidecar vouches for the other
(``.idx`` entries carry the ``.meta`` size, ``.meta`` records the message count) and for the
log (its last entry is checked against the record it points at). Anything that does not add
up is rebuilt from the log. Catching up parses only the log bytes past what was validated.
"""

from __future__ import annotations

import contextlib
import json
import os

from aixgo.errors import (
    CorruptedData,
    SessionNotFound,
)

from aixgo_backend_file import _record as record
from aixgo_backend_file._diskfull import logger
from aixgo_backend_file._state import CHUNK, IDX, LogState, Touch, fsync_dir, pread_all, write_all


class _Rebuild(Exception):
    """A sidecar disagrees with the log: rebuild both from the log."""


def _no_touch(log: LogState, updated: int) -> None:
    """A :data:`Touch` for reads that must write nothing."""


class Recovery(LogState):
    """Loading and catching up; the caller holds the exclusive file lock."""

    def _load(self, touch: Touch) -> None:
        """Cold open under the exclusive lock: header from the log, branch table and
        checkpoints from ``.meta``, message count from ``.idx``; then validate the tail."""
        if os.fstat(self.fd).st_nlink == 0:
            raise SessionNotFound(self.id)
        try:
            self._load_sidecars()
        except _Rebuild:
            logger.info("%s: its sidecar files disagree with the log; rebuilding them", self.path)
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
        self._uncut = False
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
        if self._uncut:  # a torn sidecar end stayed: never append after it
            self._detach(self.count * IDX.size, self.meta_size)

    def _load_meta(self, fd: int) -> int:
        buf = pread_all(fd, os.fstat(fd).st_size, 0)
        pos = end = 0
        while pos < len(buf):
            parsed = record.parse_at(buf, pos + 17) if len(buf) - pos > 17 else None
            if parsed is None or parsed.payload is None:
                if parsed is not None and parsed.complete:
                    raise _Rebuild
                self._cut_sidecar(fd, pos)  # a torn sidecar line: the log still has the record
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
            self._cut_sidecar(fd, size)
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

    def _cut_sidecar(self, fd: int, size: int) -> None:
        try:
            os.ftruncate(fd, size)
        except OSError:
            self._uncut = True

    def _fix_lengths(self) -> None:
        branches = self.lin.branches
        for b, br in enumerate(branches):
            nxt = self.first_ord[b + 1] if b + 1 < len(branches) else self.count
            br.length = br.fork_seq + nxt - self.first_ord[b]

    def _rebuild(self) -> None:
        """Forget the sidecars and re-derive everything from the log (O(log size))."""
        refused = False
        for fd in (self.idx_fd, self.meta_fd):
            if fd is not None:
                try:
                    os.ftruncate(fd, 0)
                except OSError:
                    refused = True
        self._reset()
        if refused:
            self._detach(0, 0)

    def _reload_from_log(self) -> bool:
        """Re-derive this view from the log alone, into memory, writing nothing: True if the
        log holds the same history as before (so a sidecar was what was wrong). Otherwise,
        or if the log turns out damaged, the view is left stale for the store to drop."""
        size, count = self.size, self.count
        self.stale = True
        self._detach(0, 0)
        self._reset()
        self._catch_up(_no_touch, cut=False)
        if (self.size, self.count) != (size, count):
            return False
        self.stale = False
        return True

    def _read_record(self, offset: int) -> tuple[bytes, int] | None:
        """The valid record at ``offset`` of the log and its end, or None."""
        head = os.pread(self.fd, 4096, offset)
        size = record.record_size(head[: record.PREFIX])
        if size is None:
            return None
        if size > len(head):
            head += pread_all(self.fd, size - len(head), offset + len(head))
        buf = head
        parsed = record.parse_at(buf, 0)
        return (parsed.payload, offset + parsed.end) if parsed.payload is not None else None

    def _catch_up(self, touch: Touch, *, cut: bool = True) -> None:
        """Apply log bytes past :attr:`size` (exclusive lock held): what other processes
        wrote, or the tail a crashed writer left. Cuts a torn tail (unless ``cut`` is False:
        then it is left, unapplied); reports damage in the middle with file and line; writes
        sidecar entries the writer did not (in memory, if the disk refuses them)."""
        end = os.fstat(self.fd).st_size
        if end < self.size:
            raise CorruptedData(f"{self.path} shrank below data already read; run repair")
        disk_idx = self._sidecar_size(self.idx_path, self.idx_fd) // IDX.size
        disk_meta = self._sidecar_size(self.meta_path, self.meta_fd)
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
                want = max(CHUNK, parsed.end - rel)
                buf, base = pread_all(self.fd, min(want, end - pos), pos), pos
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
                    idx_out += self._apply_batch(batch, disk_idx)
                    self.size = line_end
                    batch = []
            else:
                if batch:
                    self._corrupt(pos, "a record interrupts a batch of messages")
                meta_line = self._apply_record(parsed.payload, pos, buf[rel : parsed.end])
                if meta_line is not None and self.meta_size > disk_meta:
                    meta_out.append(meta_line)
                self.size = line_end
            pos = line_end
        # A half-written batch (the log ends inside it) was never acknowledged: drop it whole.
        torn = torn or bool(batch)
        if torn and cut:
            logger.info("%s: cutting off a tail torn by a crash (%d bytes from byte %d; never "
                        "acknowledged)", self.path, end - self.size, self.size)  # fmt: skip
            self._truncate(self.size)
        self._update_sidecars(idx_out, meta_out, disk_idx, disk_meta)
        if torn or idx_out or meta_out:
            self._note(touch)  # the crashed writer may not have reached the indexes

    def _apply_batch(
        self, batch: list[tuple[int, int, record.MessageHead]], disk_idx: int
    ) -> list[bytes]:
        """Apply a whole batch of message records; the ``.idx`` entries the disk lacks."""
        out: list[bytes] = []
        for off, length, h in batch:
            self._apply_message(h.idhash, h.ts)
            if self.count > disk_idx:
                out.append(IDX.pack(off, length, h.branch, h.idhash, h.ts, self.meta_size))
        self.lines += len(batch)
        return out

    def _apply_record(self, payload: bytes, pos: int, line: bytes) -> bytes | None:
        """Apply the non-message record ``line`` at ``pos``; its ``.meta`` line (``None``
        for the session header, which has none)."""
        try:
            rec = json.loads(payload)
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
        self.lines += 1
        if self.lines == 1:
            return None
        meta_line = b"%016x " % pos + line
        self.meta_size += len(meta_line)
        return meta_line

    def _check_torn(self, pos: int, end: int) -> None:
        """A record at ``pos`` does not check out. If a valid record follows it, this is
        damage in the middle: CorruptedData naming file and line, never a silent skip of
        everything after. Otherwise it is a torn tail, which the caller cuts off."""
        if end - pos > 64 << 20:
            self._corrupt(pos, "an invalid record with more than 64 MiB after it")
        tail = pread_all(self.fd, end - pos, pos)
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

    def _sidecar_size(self, path: str, fd: int | None) -> int:
        if fd is not None:
            return os.fstat(fd).st_size
        try:
            return os.stat(path, follow_symlinks=False).st_size
        except FileNotFoundError:
            return 0

    def _update_sidecars(
        self, idx_out: list[bytes], meta_out: list[bytes], disk_idx: int, disk_meta: int
    ) -> None:
        """Bring the sidecars up to date; if the disk refuses, go on with them in memory
        (reading needs no free space), from the part of them that was already right."""
        try:
            self._write_sidecars(idx_out, meta_out, disk_idx, disk_meta)
        except OSError as exc:
            if self.detached:
                raise
            logger.warning(
                "%s: cannot update the session's sidecar files (%s); reading it from the log "
                "meanwhile",
                self.path,
                exc.strerror or exc,
            )
            idx_keep = min(disk_idx, self.count) * IDX.size
            meta_keep = min(disk_meta, self.meta_size - sum(map(len, meta_out)))
            self._detach(idx_keep, meta_keep)
            self._write_sidecars(idx_out, meta_out, idx_keep // IDX.size, meta_keep)

    def _note(self, touch: Touch) -> None:
        try:
            touch(self, self.updated)
        except OSError as exc:
            # Reading must not need free space; the rows only order the listing.
            logger.warning(
                "%s: cannot add the session's listing rows (%s); it may list out of order "
                "until it is written to again or repair is run",
                self.path,
                exc.strerror or exc,
            )

    def _write_sidecars(
        self, idx_out: list[bytes], meta_out: list[bytes], disk_idx: int, disk_meta: int
    ) -> None:
        if idx_out or disk_idx > self.count:
            fd = self._idx()
            if disk_idx > self.count:  # entries for records the log does not have
                os.ftruncate(fd, self.count * IDX.size)
            if idx_out:
                write_all(fd, b"".join(idx_out))
        if meta_out or disk_meta > self.meta_size:
            fd = self._meta()
            keep = self.meta_size - sum(map(len, meta_out))
            if disk_meta != keep:
                os.ftruncate(fd, keep)
            if meta_out:
                write_all(fd, b"".join(meta_out))

    def _remove_files(self) -> None:
        for path in (self.idx_path, self.meta_path, self.path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        if self.fsync:
            fsync_dir(os.path.dirname(self.path))
