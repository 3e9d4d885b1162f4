"""Recent: the records a store read lately, as read and as decoded, so that reading them
again costs a comparison and a copy instead of a validation.

An optional speed-up for a backend whose reads get back the stored bytes (or text) of each
record, as every read should: the round trip still happens every time, and only the decoding
of what it returned is saved. Three rules keep it correct:

* A kept message is reused only for a record whose stored value, just read again, is equal
  (byte for byte, or character for character) to the value it was decoded from, at the same
  position and seq. Decoding is a function of the stored value (and of the seq the record is
  read as), so the read returns what decoding would, whoever wrote in between; a changed byte
  fails the comparison, and the record is then validated, and refused if it is damaged or
  hostile, as on a first read. The position (a seq, a file offset) only says which kept
  record to compare with.
* Kept messages are never handed out: a read returns copies
  (:func:`~aixgo.session.codec.stored_copy`), so no caller shares a list or dict with the
  store or with another caller.
* Memory is bounded: a session keeps the records of its latest read only, and the store keeps
  sessions, least recently read forgotten first, up to :attr:`Recent.budget`.

A wrapper (encryption at rest, say) may keep a ``Recent`` of its own, made with ``make``, and
read through it (:class:`~aixgo.session.ReadThrough`): the store then reuses and keeps, in
the wrapper's ``Recent``, what ``make`` turned the decoded records into (decrypted messages),
so a record read again costs the wrapper a comparison and a copy as well. ``make`` must be a
function of the messages it is given and the session id, as decoding is of the stored value.

:meth:`Recent.decode` applies the rules to a list of stored records (what ``redis://`` and
``postgresql://`` read); a store that reads records out of larger buffers (``file://``) can
use :meth:`Recent.of` and :meth:`Recent.keep` directly.

>>> from aixgo.session.codec import decode_message, encode_message, stamp_seq
>>> stored = [stamp_seq(encode_message(Message.user(t)), i) for i, t in enumerate("ab", 1)]
>>> recent = Recent()
>>> first = recent.decode("s1", stored, [1, 2], lambda i: decode_message(stored[i]))
>>> again = recent.decode("s1", stored, [1, 2], lambda i: decode_message(stored[i]))
>>> again == first, again[0] is first[0], len(recent.of("s1"))
(True, False, 2)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import cast

from aixgo.message import Message
from aixgo.session.codec import decode_batch, stored_copy

__all__ = ["BUDGET", "OVERHEAD", "Make", "Recent", "Records"]

#: A session's kept records: stored value and the message decoded from it, by position.
Records = dict[int, tuple[bytes | str, Message]]

#: What a store keeps at most by default, counted as the length of the stored values plus
#: :data:`OVERHEAD` per message (a decoded message takes about that much beyond its record).
#: A read heavier than a quarter of the budget is not kept.
BUDGET = 8 << 20
OVERHEAD = 1024

#: What a wrapper makes of freshly decoded records: ``make(session_id, messages)`` returns one
#: message per message given, in order (it may reuse the ones given: nobody else holds them).
Make = Callable[[str, list[Message]], list[Message]]


class Recent:
    """The records of the latest reads of a store's sessions (see the module docs)."""

    __slots__ = ("_sessions", "_total", "budget", "make")

    def __init__(self, budget: int = BUDGET, *, make: Make | None = None) -> None:
        self.budget = budget
        #: What the decoded records become before they are kept and returned (``None``: the
        #: decoded messages themselves); see the module docs.
        self.make = make
        # Records, weight, and how decode() read them (numbered or not; None: kept by keep()).
        self._sessions: OrderedDict[str, tuple[Records, int, bool | None]] = OrderedDict()
        self._total = 0

    def of(self, session_id: str) -> Records:
        """The records of the session's latest read kept (empty if none); read-only."""
        kept = self._sessions.get(session_id)
        return kept[0] if kept is not None else {}

    def limit(self) -> int:
        """The most one read may weigh to be kept."""
        return self.budget // 4

    def keep(self, session_id: str, records: Records, weight: int) -> None:
        """Keep ``records`` (weighing ``weight``) as the session's, in place of what it had."""
        self._keep(session_id, records, weight, None)

    def _keep(self, session_id: str, records: Records, weight: int, numbered: bool | None) -> None:
        self.drop(session_id)
        if not records or weight > self.limit():
            return
        self._sessions[session_id] = (records, weight, numbered)
        self._total += weight
        while self._total > self.budget:
            self._total -= self._sessions.popitem(last=False)[1][1]

    def drop(self, session_id: str) -> None:
        """Forget the session's records (deleted, say)."""
        kept = self._sessions.pop(session_id, None)
        if kept is not None:
            self._total -= kept[1]

    def clear(self) -> None:
        """Forget every session's records (the store closed, say)."""
        self._sessions.clear()
        self._total = 0

    def decode(
        self,
        session_id: str,
        records: Sequence[bytes] | Sequence[str],
        keys: Sequence[int],
        careful: Callable[[int], Message],
        *,
        first_seq: int | None = None,
    ) -> list[Message]:
        """What :func:`~aixgo.session.codec.decode_batch` ``(records, careful,
        first_seq=first_seq)`` returns (turned by :attr:`make`, if set), reusing the
        session's kept messages: record ``i``, stored at position ``keys[i]``, is a copy of
        the message kept at that position if its value equals the kept one (and, with
        ``first_seq``, that message is ``first_seq + i``); the other records are validated
        together, in one batch per run of them. This read's records are then kept as the
        session's, if they fit.

        Records read with ``first_seq`` are reused only by reads with it, and the others by
        reads without it: the two ways may number one stored value differently.
        """
        n = len(records)
        weight = sum(map(len, records)) + n * OVERHEAD
        keeping = weight <= self.limit()
        numbered = first_seq is not None
        kept_now = self._sessions.get(session_id)
        known = kept_now[0] if kept_now is not None and kept_now[2] is numbered else None
        if not known:
            out = decode_batch(records, careful, first_seq=first_seq)
            if self.make is not None:
                out = self.make(session_id, out)
            if keeping:
                kept = self._fresh(records, keys, out, range(n))
                self._keep(session_id, kept, weight, numbered)
            else:
                self.drop(session_id)
            return out
        hits: list[tuple[bytes | str, Message] | None] = [None] * n
        misses: list[int] = []
        get = known.get
        for i, value in enumerate(records):
            hit = get(keys[i])
            if (
                hit is not None
                and hit[0] == value
                and (first_seq is None or hit[1].seq == first_seq + i)
            ):
                hits[i] = hit
            else:
                misses.append(i)
        decoded = self._decode_misses(session_id, records, misses, careful, first_seq)
        out = []
        for i, hit in enumerate(hits):
            if hit is None:
                out.append(decoded[i])
            else:
                message = hit[1]
                out.append(stored_copy(message, cast("int", message.seq)))
        if not keeping:
            self.drop(session_id)
            return out
        if not misses and len(known) == n:  # the same records again: keep them as they are
            self._keep(session_id, known, weight, numbered)
            return out
        kept = self._fresh(records, keys, out, misses)
        for i, hit in enumerate(hits):
            if hit is not None:
                kept[keys[i]] = hit
        self._keep(session_id, kept, weight, numbered)
        return out

    def _decode_misses(
        self,
        session_id: str,
        records: Sequence[bytes] | Sequence[str],
        misses: list[int],
        careful: Callable[[int], Message],
        first_seq: int | None,
    ) -> dict[int, Message]:
        """The records at ``misses`` (ascending), decoded: in one batch when the records
        carry their seq, else one batch per run of consecutive records."""
        out: dict[int, Message] = {}
        if not misses:
            return out
        runs = [misses] if first_seq is None else _runs(misses)
        for run in runs:
            part = cast("Sequence[bytes] | Sequence[str]", [records[i] for i in run])
            at = None if first_seq is None else first_seq + run[0]
            got = decode_batch(part, _at(careful, run), first_seq=at)
            if self.make is not None:
                got = self.make(session_id, got)
            out.update(zip(run, got, strict=True))
        return out

    @staticmethod
    def _fresh(
        records: Sequence[bytes] | Sequence[str],
        keys: Sequence[int],
        out: list[Message],
        which: Sequence[int],
    ) -> Records:
        """Records ``which`` as kept: each value with a copy of its message (the caller owns
        ``out``), if the message has its seq."""
        kept: Records = {}
        for i in which:
            message = out[i]
            if message.seq is not None:
                kept[keys[i]] = (records[i], stored_copy(message, message.seq))
        return kept


def _runs(ascending: list[int]) -> list[list[int]]:
    """``ascending`` cut into runs of consecutive numbers."""
    runs: list[list[int]] = []
    for i in ascending:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _at(careful: Callable[[int], Message], where: list[int]) -> Callable[[int], Message]:
    """``careful`` for a batch of the records at ``where``."""
    return lambda j: careful(where[j])
