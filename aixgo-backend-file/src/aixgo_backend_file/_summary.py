"""Summary: a session's listing row read from its log's first and last records alone.

A listing page needs, per session, what :class:`~aixgo.session.models.SessionInfo` holds:
the header's fields (line 1 of the log, never rewritten) and the message count and
``updated_at``, which the log's last record gives whenever it is a message closing its
batch: its ``seq`` is the length of the current history (messages after a restore are on
the new head branch, numbered on from the fork) and its time is the newest in the log
(writers stamp ``max(now, updated_at)`` after catching up). So the row costs an open, a
lock tried, an ``fstat`` and one or two ``pread``: no sidecar, no wait, nothing written at
append time. The store keeps the descriptor a while, so a later page checks the row with one
``lseek`` (a delete grows the log before unlinking it).

Reading takes the shared lock without waiting (a writer at work, or a create not yet
complete, holds it exclusively: then the caller opens the session the usual way, which
waits), and trusts only what checks out: a header naming this session, and a last line that
is a whole record (its length and CRC) ending exactly at the size ``fstat`` gave, a message
closing its batch. Anything else — a tail torn by a crash, a checkpoint, restore or delete
record last, an unlinked file — is left to the caller, which opens the session the usual
way (locked, caught up, repaired).
"""

from __future__ import annotations

import fcntl
import json
import os
from typing import Any

from aixgo.clock import from_micros
from aixgo.session.models import SessionInfo

from aixgo_backend_file import _record as record
from aixgo_backend_file._state import pread_all

#: Bytes read at each end of the log at first (a log this short or shorter is read whole).
_WINDOW = 4096
#: The most read to find the last line; a longer last record is left to the usual open.
_MAX_TAIL = 1 << 20


#: What the row was read from (the log's ``st_ino``, ``st_size`` and ``st_mtime_ns``), the
#: summary, and its ``updated_at`` in µs.
Row = tuple[tuple[int, int, int], SessionInfo, int]


def read(fd: int, session_id: str) -> Row | None:
    """The summary of the session whose log is open as ``fd``, from its first and last
    records; None if they do not settle it, or a writer holds the log (open the session
    the usual way, which waits for it)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return None
    try:
        return _read(fd, session_id)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _read(fd: int, session_id: str) -> Row | None:
    st = os.fstat(fd)
    size = st.st_size
    if st.st_nlink == 0 or size == 0:
        return None  # deleted meanwhile, or a create under way
    whole = size <= 2 * _WINDOW
    head = pread_all(fd, size if whole else _WINDOW, 0)
    if whole:
        tail, tail_at = head, 0
    else:
        tail_at = size - _WINDOW
        tail = pread_all(fd, _WINDOW, tail_at)
    if len(tail) != size - tail_at:
        return None  # cut back meanwhile (a torn tail being repaired)
    try:
        header = _header(fd, head, session_id)
        if header is None:
            return None
        rec, header_end = header
        created = rec["created_at"]
        if header_end == size:
            count, updated = 0, created
        else:
            last = _last_message(fd, tail, tail_at, size)
            if last is None:
                return None
            count, updated = last[0], max(created, last[1])
        info = SessionInfo(
            id=session_id,
            agent=rec["agent"],
            user_id=rec["user_id"],
            created_at=from_micros(created),
            updated_at=from_micros(updated),
            message_count=count,
            metadata=rec["metadata"],
        )
    except (ValueError, KeyError, TypeError):
        return None  # the usual open reports a damaged header with file and line
    return (st.st_ino, size, st.st_mtime_ns), info, updated


def _header(fd: int, head: bytes, session_id: str) -> tuple[dict[str, Any], int] | None:
    """The header record and where it ends, if line 1 is a whole header of this session."""
    want = record.record_size(head[: record.PREFIX])
    if want is None:
        return None
    if want > len(head):
        head += pread_all(fd, want - len(head), len(head))
    parsed = record.parse_at(head, 0)
    if parsed.payload is None:
        return None
    rec = json.loads(parsed.payload)
    if not isinstance(rec, dict) or rec.get("t") != "session" or rec.get("id") != session_id:
        return None
    return rec, parsed.end


def _last_message(fd: int, tail: bytes, tail_at: int, size: int) -> tuple[int, int] | None:
    """``(seq, time)`` of the log's last record if it is a message that closes its batch;
    ``tail`` holds the log's bytes from ``tail_at`` to ``size``."""
    if not tail.endswith(b"\n"):
        return None
    while True:
        start = tail.rfind(b"\n", 0, len(tail) - 1) + 1
        if start or tail_at == 0:
            break
        if size - tail_at >= _MAX_TAIL:
            return None
        more = min(tail_at, size - tail_at)  # double the window
        tail = pread_all(fd, more, tail_at - more) + tail
        tail_at -= more
    parsed = record.parse_at(tail, start)
    if parsed.payload is None or parsed.end != len(tail):
        return None
    head = record.parse_message(parsed.payload)
    if head is None or head.seq != head.last:
        return None  # another kind of record, or a batch not (yet) whole
    return head.seq, head.ts
