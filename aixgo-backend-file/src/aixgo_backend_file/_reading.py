"""Reading: the tail of a session (``get_messages(last=n)``) and the look-up of a message id.

The read path is :func:`messages`: the lineage names the spans of log ordinals that make up
the current history's last ``n`` messages, one ``pread`` of ``.idx`` per span gives their
offsets, and records that lie close together are read with one ``pread`` of the log
(:func:`_decode_entries`). Records back to back are checked as one run, others one by one;
a record whose line is byte for byte one the store kept from a recent read is copied from it
rather than checked and decoded again (:mod:`aixgo.session.kit.recent`). An ``.idx`` entry
that points at the wrong bytes is derived data gone bad, not a damaged log: the records are
then found from the log itself, with a warning.
"""

from __future__ import annotations

import bisect
import os

from aixgo.errors import CorruptedData
from aixgo.message import Message
from aixgo.session.codec import decode_at, decode_batch, stored_copy
from aixgo.session.kit.recent import OVERHEAD, Recent, Records

from aixgo_backend_file import _record as record
from aixgo_backend_file._diskfull import logger
from aixgo_backend_file._recovery import reload_from_log
from aixgo_backend_file._state import CHUNK, ID_WINDOW, IDX, LogState, idx_file, pread_all

#: ``.idx`` entries as unpacked: offset, length, branch, id hash, time, ``.meta`` size.
Entries = list[tuple[int, ...]]


def messages(log: LogState, last: int | None, recent: Recent | None = None) -> list[Message]:
    """The current history's last ``last`` messages (all if None), oldest first; with
    ``recent``, records read lately and unchanged since are copied rather than decoded
    (:mod:`aixgo.session.kit.recent`), records decoded afresh are turned by ``recent.make``
    (a wrapper's), and this read's records are kept there."""
    out: list[Message] = []
    reuse = _Reuse(log.id, recent) if recent is not None else None
    for branch, lo, hi in log.lin.tail_spans(last):
        first = _ordinal(log, branch, lo)
        raw = pread_all(idx_file(log), (hi - lo + 1) * IDX.size, first * IDX.size)
        _read_entries(log, list(IDX.iter_unpack(raw)), first, lo, out, reuse)
    if recent is not None and reuse is not None:
        recent.keep(log.id, reuse.kept if reuse.weight <= reuse.room else {}, reuse.weight)
    return out


class _Reuse:
    """What one read may reuse (``known``) and what it keeps for the next (``kept``, until
    its ``weight`` passes ``room``), and what the decoded records become (``make``)."""

    __slots__ = ("kept", "known", "make", "room", "session_id", "weight")

    def __init__(self, session_id: str, recent: Recent) -> None:
        self.session_id = session_id
        self.known = recent.of(session_id)
        self.make = recent.make
        self.kept: Records = {}
        self.room = recent.limit()
        self.weight = 0

    def keeping_nothing(self) -> _Reuse:
        """This read's ``make``, reusing and keeping nothing (entries read again)."""
        other = _Reuse.__new__(_Reuse)
        other.session_id, other.make = self.session_id, self.make
        other.known, other.kept, other.room, other.weight = {}, {}, -1, 0
        return other

    def grow(self, size: int, count: int) -> bool:
        """Count a chunk of ``count`` records in ``size`` bytes read; whether the read is
        still light enough for its records to be kept."""
        self.weight += size + count * OVERHEAD
        return self.weight <= self.room


def _locate(log: LogState, ordinal: int) -> tuple[int, int]:
    """The (branch, seq) of the message at log ordinal ``ordinal``."""
    branch = bisect.bisect_right(log.first_ord, ordinal) - 1
    return branch, log.lin.branches[branch].fork_seq + 1 + ordinal - log.first_ord[branch]


def _ordinal(log: LogState, branch: int, seq: int) -> int:
    """The log ordinal of message ``seq`` of ``branch``."""
    return log.first_ord[branch] + seq - log.lin.branches[branch].fork_seq - 1


def _read_entries(
    log: LogState,
    entries: Entries,
    first: int,
    seq: int,
    out: list[Message],
    reuse: _Reuse | None = None,
) -> None:
    """Decode the records ``entries`` (``.idx`` entries from ordinal ``first``, seq ``seq``
    on) point at, onto ``out``; from the log itself if the entries are wrong."""
    done = len(out)
    try:
        _decode_entries(log, entries, first, seq, out, reuse)
    except CorruptedData:
        fixed = _entries_from_log(log, entries, first)
        if fixed is None:
            raise
        del out[done:]
        _decode_entries(log, fixed, first, seq, out, reuse and reuse.keeping_nothing())


def _entries_from_log(log: LogState, entries: Entries, first: int) -> Entries | None:
    """``entries`` as the log says they are, if they differ from what ``.idx`` said."""
    if not reload_from_log(log):
        return None
    raw = pread_all(idx_file(log), len(entries) * IDX.size, first * IDX.size)
    fixed = list(IDX.iter_unpack(raw))
    pairs = enumerate(zip(entries, fixed, strict=False))
    bad = next((k for k, (was, right) in pairs if was != right), None)
    if bad is None:
        return None
    logger.warning(
        "%s: entry %d does not match the log; reading the session from its log (the index "
        "needs repair: run `aixgo file repair`)",
        log.idx_path,
        first + bad + 1,
    )
    return fixed


def _decode_entries(
    log: LogState, entries: Entries, first: int, seq: int, out: list[Message], reuse: _Reuse | None
) -> None:
    """Read the records in runs of at most :data:`CHUNK` bytes, one ``pread`` each."""
    i = 0
    while i < len(entries):
        start = entries[i][0]
        j = len(entries) - 1
        if entries[j][0] + entries[j][1] - start > CHUNK:
            j = i
            while j + 1 < len(entries) and entries[j + 1][0] + entries[j + 1][1] - start <= CHUNK:
                j += 1
        stop = entries[j][0] + entries[j][1]
        if not start < stop <= log.size:
            raise CorruptedData(f"{log.idx_path}: entry {first + i + 1} points outside the log")
        buf = pread_all(log.fd, stop - start, start)
        if reuse is None or not reuse.known:
            keeping = reuse is not None and reuse.grow(len(buf), j - i + 1)
            out += _decode_run(log, entries, first, seq, i, j, start, buf, reuse, keeping)
        else:
            _decode_known(log, entries, first, seq, i, j, start, buf, out, reuse)
        i = j + 1


def _decode_known(
    log: LogState,
    entries: Entries,
    first: int,
    seq: int,
    i: int,
    j: int,
    start: int,
    buf: bytes,
    out: list[Message],
    reuse: _Reuse,
) -> None:
    """Entries ``i`` to ``j`` onto ``out``: a copy of the kept message for each line that
    is byte for byte the one kept at its offset and seq, the others decoded."""
    known, kept = reuse.known, reuse.kept
    keeping = reuse.grow(len(buf), j - i + 1)
    hits: dict[int, Message] = {}
    for k in range(i, j + 1):
        offset, length = entries[k][0], entries[k][1]
        hit = known.get(offset)
        if hit is not None and hit[1].seq == seq + k:
            pos = offset - start
            if pos >= 0 and buf[pos : pos + length] == hit[0]:
                hits[k] = hit[1]
                if keeping:
                    kept[offset] = hit
    if len(hits) == j - i + 1:  # all of them: the same read again, say
        out += map(stored_copy, hits.values(), range(seq + i, seq + j + 1))
        return
    k = i
    while k <= j:
        message = hits.get(k)
        if message is not None:
            out.append(stored_copy(message, seq + k))
            k += 1
            continue
        miss = k
        while k + 1 <= j and k + 1 not in hits:
            k += 1
        out += _decode_run(log, entries, first, seq, miss, k, start, buf, reuse, keeping)
        k += 1


def _decode_run(
    log: LogState,
    entries: Entries,
    first: int,
    seq: int,
    i: int,
    j: int,
    start: int,
    buf: bytes,
    reuse: _Reuse | None,
    keeping: bool,
) -> list[Message]:
    """The messages of entries ``i`` to ``j``, whose records lie in ``buf`` (read from log
    offset ``start``): checked as one run
    (:func:`~aixgo_backend_file._record.message_run`), or else each record's frame against
    its entry; then decoded in one batch, and kept in ``reuse`` if ``keeping``."""
    lo, hi = entries[i][0] - start, entries[j][0] + entries[j][1] - start
    run = entries[i : j + 1]
    part = buf if (lo, hi) == (0, len(buf)) else buf[lo:hi] if 0 <= lo < hi else b""
    data = record.message_run(part, seq + i, [e[1] for e in run])
    # A run tiled by its lines is where the entries say only if they lie back to back; a
    # record checked on its own is where its entry says.
    placed = data is None or [e[0] + e[1] for e in run[:-1]] == [e[0] for e in run[1:]]
    if data is None:
        data = []
        for k in range(i, j + 1):
            offset, length = entries[k][0], entries[k][1]
            found = record.message_at(buf, offset - start, length) if offset >= start else None
            if found is None or found[0] != seq + k:
                line = 2 + first + k + bisect.bisect_left(log.meta_offsets, offset)
                raise CorruptedData(
                    f"{log.path}, line {line}: message record {first + k + 1} fails its "
                    "checksum (the disk returned damaged data); run `aixgo file repair`"
                )
            data.append(found[1])
    at = seq + i
    out = decode_batch(data, lambda k: decode_at(data[k], at + k, log.path), first_seq=at)
    if reuse is not None and reuse.make is not None:
        out = reuse.make(reuse.session_id, out)
    if reuse is not None and keeping and placed:
        kept = reuse.kept
        for k, (offset, length, *_) in enumerate(run):
            pos = offset - start
            kept[offset] = (buf[pos : pos + length], stored_copy(out[k], at + k))
    return out


def _message_at(log: LogState, ordinal: int, seq: int) -> Message:
    entry = IDX.unpack(os.pread(idx_file(log), IDX.size, ordinal * IDX.size))
    out: list[Message] = []
    _read_entries(log, [entry], ordinal, seq, out)
    return out[0]


def _load_window(log: LogState) -> dict[int, list[int]]:
    """Id hash -> log ordinals, of the last :data:`ID_WINDOW` messages (read once)."""
    if log.window is None:
        window: dict[int, list[int]] = {}
        lo = max(0, log.count - ID_WINDOW)
        if log.count:
            raw = pread_all(idx_file(log), (log.count - lo) * IDX.size, lo * IDX.size)
            for k, entry in enumerate(IDX.iter_unpack(raw)):
                window.setdefault(entry[3], []).append(lo + k)
        log.window = window
    elif len(log.window) > 2 * ID_WINDOW:
        log.window = None
        return _load_window(log)
    return log.window


def find(log: LogState, message: Message, idhash: int) -> Message | None:
    """The stored copy of ``message`` if its id is in the current history."""
    ords = _load_window(log).get(idhash)
    if not ords:
        return None
    for ordinal in reversed(ords):
        branch, seq = _locate(log, ordinal)
        if log.lin.is_live(branch, seq):
            stored = _message_at(log, ordinal, seq)
            if stored.id == message.id:
                return stored
    return None
