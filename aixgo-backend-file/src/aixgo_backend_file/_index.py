"""Listing indexes: which sessions to show, most recently updated first, one page at a time.

Each listing key — everything (``g``), an agent (``a-<hash>``), a user (``u-<hash>``), an
agent and user (``p-<hash>``) — has an append-only file of fixed-width lines
``<updated_at µs, 16 hex> <session id>\\n``. Creating a session, appending to it or restoring
it appends one line to each of its keys: O(1), nothing rewritten, and safe from several
processes at once without a lock (each line is a single ``O_APPEND`` write far below
``PIPE_BUF``).

A session's newest line is the one that counts; older lines are skipped when reading. A
writer that wrote the session's rows itself at most :data:`REFRESH_US` ago writes none (an
append to a session updated moments ago costs no listing syscall at all): the newest row then
carries an older time than its session, by at most :data:`REFRESH_US`, wherever other
sessions' rows were written since. Rows are only candidates, checked against the session
itself (its log is the truth): deleted sessions drop out and the sort key is the session's
real ``updated_at``.

Lines are in time order up to the few microseconds between a writer taking its timestamp and
writing the line, so a page reads backwards from the end (or from a binary search for the
cursor) and stops once no line it has not read could still belong on the page, allowing
:data:`SLACK_US` of disorder (and :data:`REFRESH_US` of row age). It looks up only the rows
that could belong on it: once it is full, a row more than :data:`REFRESH_US` older than its
last item cannot (nor can any older row of that session), and with a cursor, a row newer
than the cursor cannot (a session is never older than its rows). So a burst of sessions
updated within :data:`SLACK_US` of each other costs a page a scan of their rows, not a
lookup of each. The files are rebuilt and compacted by :mod:`aixgo_backend_file.repair`.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import os
import re
from collections import OrderedDict
from collections.abc import Callable

from aixgo.clock import to_micros
from aixgo.identifiers import ID_LENGTH, ID_PATTERN
from aixgo.session.cursor import decode_cursor, encode_cursor
from aixgo.session.models import Page, SessionInfo

from aixgo_backend_file._paths import Layout, key_hash, open_file

#: Bytes per index line: 16 hex digits of time, a space, the session id, a newline.
ENTRY = 16 + 1 + ID_LENGTH + 1
#: How far out of time order two index lines may be written (a writer stalled this long
#: between timestamping and writing may be listed slightly out of order).
SLACK_US = 100_000
#: How much older than its session a session's newest row may be: a writer whose own row is
#: still a key's newest skips writing another only while that row is younger than this. The
#: bound lets a page pass over rows that cannot belong on it without looking them up.
REFRESH_US = 2_000
_LINE = re.compile(rb"([0-9a-f]{16}) (" + ID_PATTERN.encode() + rb")\n")
_SCAN = 512  # lines read per pread when scanning backwards
_MAX_FDS = 64

#: Looks a session up for listing, given the time of its newest row read (it is at least
#: that new): its current summary and ``updated_at`` in µs, or None if it no longer exists.
Resolve = Callable[[str, int], tuple[SessionInfo, int] | None]


def keys_for(agent: str, user_id: str | None) -> list[str]:
    """The listing keys a session of ``agent`` and ``user_id`` appears under."""
    keys = ["g", "a-" + key_hash(agent)]
    if user_id is not None:
        keys += ["u-" + key_hash(user_id), "p-" + key_hash(agent, user_id)]
    return keys


def query_key(agent: str | None, user_id: str | None) -> str:
    if agent is not None and user_id is not None:
        return "p-" + key_hash(agent, user_id)
    if user_id is not None:
        return "u-" + key_hash(user_id)
    if agent is not None:
        return "a-" + key_hash(agent)
    return "g"


class Index:
    """The listing index files of one store, with a small cache of open descriptors."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._fds: OrderedDict[str, int] = OrderedDict()

    def close(self) -> None:
        while self._fds:
            os.close(self._fds.popitem()[1])

    def _fd(self, key: str, *, create: bool) -> int | None:
        fd = self._fds.get(key)
        if fd is not None:
            self._fds.move_to_end(key)
            return fd
        flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0)
        try:
            fd = open_file(self.layout.index_file(key), flags, "listing index")
        except FileNotFoundError:
            return None
        self._fds[key] = fd
        if len(self._fds) > _MAX_FDS:
            os.close(self._fds.popitem(last=False)[1])
        return fd

    def note(self, keys: list[str], updated: int, session_id: str) -> None:
        """Record that ``session_id`` was updated at ``updated`` (µs) under ``keys``: one
        line per key. OSError if the disk refuses a line; a line cut short is taken back,
        as the fixed-width lines after it would be misread.
        """
        line = b"%016x %b\n" % (updated, session_id.encode())
        for key in keys:
            fd = self._fd(key, create=True)
            assert fd is not None
            written = os.write(fd, line)
            if written != len(line):
                _take_back(fd, written)
                raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (listing index)")

    def page(
        self,
        key: str,
        *,
        limit: int,
        cursor: str | None,
        resolve: Resolve,
    ) -> Page[SessionInfo]:
        after = None
        if cursor is not None:
            when, sid = decode_cursor(cursor)
            after = (to_micros(when), sid)
        fd = self._fd(key, create=False)
        if fd is None:
            return Page(items=[], next_cursor=None)
        count = os.fstat(fd).st_size // ENTRY
        hi = count if after is None else self._search(fd, count, after[0] + SLACK_US)
        scan = _Scan(limit, after, resolve)
        while hi > 0:
            lo = max(0, hi - _SCAN)
            if scan.lines(os.pread(fd, (hi - lo) * ENTRY, lo * ENTRY)):
                break
            hi = lo
        return scan.page()

    def _search(self, fd: int, count: int, ts: int) -> int:
        """The number of lines up to the first one newer than ``ts`` (lines are in time
        order up to :data:`SLACK_US`, which the caller has added)."""
        lo, hi = 0, count
        while lo < hi:
            mid = (lo + hi) // 2
            m = _LINE.fullmatch(os.pread(fd, ENTRY, mid * ENTRY))
            if m is not None and int(m.group(1), 16) > ts:
                hi = mid
            else:
                lo = mid + 1
        return lo


def _take_back(fd: int, written: int) -> None:
    """Cut off the ``written`` bytes of a line just appended short to ``fd``, unless another
    writer appended after them (on a full disk it cannot have: its write needed room too)."""
    end = os.lseek(fd, 0, os.SEEK_CUR)
    with contextlib.suppress(OSError):
        if os.fstat(fd).st_size == end:
            os.ftruncate(fd, end - written)


class _Scan:
    """One listing page's search through an index file's lines, newest first."""

    def __init__(self, limit: int, after: tuple[int, str] | None, resolve: Resolve) -> None:
        self.limit = limit
        self.after = after
        self.resolve = resolve
        self.seen: set[str] = set()
        self.found: list[tuple[int, str, SessionInfo]] = []
        self.best: list[tuple[int, str]] = []  # min-heap of the limit+1 best keys found
        # Once limit+1 sessions are found: the oldest one's time, less REFRESH_US. A row
        # older than this cannot belong on the page, nor can any row of its session before
        # it (a session's rows are written in time order), so it is passed over unresolved;
        # and once a row is SLACK_US older still, no row before it can belong either.
        self.skip_below = -1
        self.stop_below = -1
        # A session is never older than its rows, so with a cursor a row newer than the
        # cursor is passed over unresolved too (its session's older rows still come up).
        self.after_ts = after[0] if after is not None else 1 << 64

    def lines(self, raw: bytes) -> bool:
        """Take in a block of whole lines; True once no older line can be on the page."""
        for pos in range((len(raw) // ENTRY - 1) * ENTRY, -1, -ENTRY):
            try:
                ts = int(raw[pos : pos + 16], 16)
            except ValueError:
                continue  # a damaged line (power loss); repair rewrites the file
            if ts < self.skip_below:
                if ts < self.stop_below and _LINE.fullmatch(raw, pos, pos + ENTRY):
                    return True
                continue
            if ts > self.after_ts:
                continue  # its session is at least this new: on an earlier page
            m = _LINE.fullmatch(raw, pos, pos + ENTRY)
            if m is not None:
                self._row(ts, m.group(2).decode())
        return False

    def _row(self, ts: int, sid: str) -> None:
        after = self.after
        if sid in self.seen or (after is not None and (ts, sid) >= after):
            return
        self.seen.add(sid)
        got = self.resolve(sid, ts)
        if got is None:
            return
        info, updated = got
        sort_key = (updated, sid)
        if after is not None and sort_key >= after:
            return
        self.found.append((*sort_key, info))
        if len(self.best) <= self.limit:
            heapq.heappush(self.best, sort_key)
        else:
            heapq.heappushpop(self.best, sort_key)
        if len(self.best) > self.limit:
            self.skip_below = self.best[0][0] - REFRESH_US
            self.stop_below = self.skip_below - SLACK_US

    def page(self) -> Page[SessionInfo]:
        found = sorted(self.found, key=lambda row: (row[0], row[1]), reverse=True)
        items = [row[2] for row in found[: self.limit]]
        more = len(found) > self.limit
        nxt = encode_cursor(items[-1].updated_at, items[-1].id) if more else None
        return Page(items=items, next_cursor=nxt)
